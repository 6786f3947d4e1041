package conn

import (
	"errors"
	"io"
	"time"
)

// Acknowledged delivery: a BatchWriter given an AckProtocol (WithAcks)
// keeps every message until the peer's program acknowledges it, and replays
// what was not acknowledged on the next connection. A protocol plugs in by
// implementing AckProtocol and AckSession; the BatchWriter does the rest:
// the queue, the window, the replay, the counting, Flush and Close.
//
// Adding a protocol: RELP is in the relp subpackage. Lumberjack v2 (Beats
// to Logstash) would open with nothing, frame each batch as a window frame
// ('2W', the count) and one data frame per message numbered from 1 per
// connection, and read '2A' frames, each acknowledging every message up to
// its number: its session keeps the sequence number of its first message
// and answers Ack{Through: first + n}. Fluentd's forward protocol would
// frame each batch as one PackedForward entry with a chunk option and read
// the {"ack": chunk} answers, each acknowledging the whole batch: its
// session keeps a list of (chunk, end of batch) in the order sent. Neither
// needs a change to the BatchWriter.

// An AckProtocol is an application protocol in which the peer
// acknowledges the messages it has taken: RELP, Lumberjack v2, Fluentd's
// forward protocol with acks. It opens one AckSession per connection.
// Open is called from the BatchWriter's goroutine, one call at a time.
type AckProtocol interface {
	// Open runs the protocol's handshake on a new connection and returns
	// its session. rw writes on the connection and reads from it; its
	// reads and writes fail once the handshake has taken longer than the
	// ack timeout (WithAckTimeout), or Close's time runs out. An error ends
	// the connection: the Manager redials, and Open is called again on the
	// next one. An error matching ErrAckRefused is not retried sooner than
	// the Manager's backoff allows.
	Open(rw io.ReadWriter) (AckSession, error)
}

// An AckSession is one connection's state of an AckProtocol. The
// BatchWriter numbers messages 0, 1, 2... in the order Writes accepted
// them, and gives each batch to AppendBatch with the number of its first
// message; messages are sent in order, and after a new connection the
// unacknowledged ones are sent again, in order, from the oldest. A
// protocol with numbers of its own maps them to these.
//
// AppendBatch and AppendClose are called from the BatchWriter's goroutine;
// ReadAck from a goroutine of the session's own, concurrently with them.
// The session is abandoned (no method called again) once ReadAck returns
// an error or the connection is lost.
type AckSession interface {
	// AppendBatch appends to dst the bytes that send msgs, numbered first,
	// first+1, ..., and returns the extended slice. msgs and the bytes
	// they hold are valid only during the call.
	AppendBatch(dst []byte, first uint64, msgs [][]byte) []byte
	// ReadAck reads from the connection until the peer acknowledges
	// messages, and returns that. It returns an error when the connection
	// fails, when the peer says it closes the session, or on bytes the
	// protocol does not allow: the connection is then left, and what was
	// not acknowledged goes on the next one. After AppendClose's bytes
	// were written, it returns io.EOF once the peer has confirmed the
	// close. It must return when a read fails, timeouts included, and
	// not retry: the BatchWriter ends a reader by making its reads fail,
	// and its Close waits for that.
	ReadAck() (Ack, error)
	// AppendClose appends to dst the bytes that end the session
	// gracefully, or returns dst unchanged if the protocol has none (then
	// ReadAck is expected to return io.EOF when the peer closes the
	// connection).
	AppendClose(dst []byte) []byte
}

// An Ack is what the peer acknowledged: every message numbered below
// Through was taken. If Err is not nil, the peer refused message
// Through-1 with it (a RELP answer other than 200, say): the BatchWriter
// counts it as refused and dropped, reports it, and does not send it
// again. An Ack whose Through is not above an earlier one's changes
// nothing, so each refusal needs an Ack of its own, and the messages
// taken before it an Ack before it.
type Ack struct {
	Through uint64
	Err     error
}

// ErrAckRefused is matched by the error of an AckProtocol's Open when the
// peer refused the session (it does not speak the commands offered), and
// by the errors of refused messages a BatchWriter reports.
var ErrAckRefused = errors.New("conn: refused by the peer")

// ErrAckTimeout is the cause recorded for a connection left because the
// peer acknowledged nothing for the ack timeout while messages waited for
// an acknowledgement, or did not finish the handshake within it.
var ErrAckTimeout = errors.New("conn: no acknowledgement within the ack timeout")

// Defaults of acknowledged delivery.
const (
	DefaultWindow      = 128     // messages sent and not yet acknowledged, at most: librelp's window
	DefaultWindowBytes = 4 << 20 // their bytes, at most
	DefaultAckTimeout  = 30 * time.Second
)

// WithAcks makes the BatchWriter deliver through protocol p, which
// acknowledges messages: a message's room in the buffer is given back only
// when the peer acknowledges it (or refuses it), Flush returns nil only
// when every message it waited for was acknowledged, and Close waits for
// acknowledgements within its timeout and reports the messages that were
// not. Messages not acknowledged when a connection ends are sent again on
// the next one: those replays are the only duplicates (BatchStats.Replayed),
// and there are at most a window of them per lost connection. A switch
// (WithMaxConnectionAge, a fail-back) loses no connection: the old
// one is closed for writing, and what it carried is acknowledged on it
// (within the ack timeout) before anything is sent on the new one; only
// what it leaves unanswered is replayed. The
// Manager must carry nothing else: its connection speaks p. A
// BatchWriter over a datagram network refuses every Write with an error:
// acknowledgements need a stream.
func WithAcks(p AckProtocol) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		c.acks = p
	})
}

// WithWindow bounds what is sent and not yet acknowledged: at most
// messages messages (DefaultWindow) and bytes bytes (DefaultWindowBytes);
// a single message larger than bytes goes alone. When the window is full
// the BatchWriter waits for acknowledgements; meanwhile Writes fill the
// buffer, and a full buffer drops or waits (WithWaitWhenFull) as without
// acks. The window is also how many duplicates a lost connection can cost.
// A value below 1 keeps its default. Without WithAcks it does nothing.
func WithWindow(messages, bytes int) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if messages > 0 {
			c.window = messages
		}
		if bytes > 0 {
			c.windowBytes = bytes
		}
	})
}

// WithAckTimeout bounds how long a connection may go without an
// acknowledgement while messages wait for one, and how long a handshake
// may take (DefaultAckTimeout): past it, the connection is left with
// ErrAckTimeout and the messages go on the next one (a standby's, with
// several endpoints, after a dial). It holds whatever the BatchWriter is
// doing: a write blocked on a peer that stopped reading and answering is
// cut at the ack timeout, whatever the write timeout, 0 included.
// The Manager's write timeout (WithWriteTimeout) bounds each write on its
// own: while acknowledgements keep coming, a slow write runs until it.
// A value below 1 keeps the default. Without WithAcks it does nothing.
func WithAckTimeout(d time.Duration) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if d > 0 {
			c.ackTimeout = d
		}
	})
}
