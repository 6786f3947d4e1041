package conn

import (
	"errors"
	"math"
	"strings"
	"time"
)

// Defaults of the BatchWriter options.
const (
	DefaultBufferSize   = 4 << 20  // bytes queued at most
	DefaultMaxBatch     = 64 << 10 // bytes per write on a stream socket
	DefaultDatagramSize = 1432     // bytes per write on a datagram socket: fits a 1500-byte MTU
	DefaultCloseTimeout = 5 * time.Second
)

// ErrBufferFull is returned by BatchWriter.Write when the message does not
// fit in the buffer (and, with WithWaitWhenFull, did not fit within the
// wait). The message was dropped and counted in BatchStats.Dropped.
var ErrBufferFull = errors.New("conn: buffer full")

// ErrTooLarge is returned by BatchWriter.Write for a message that does not
// fit in the whole buffer (its length plus MessageOverhead is more than
// WithBufferSize). It was dropped and counted.
var ErrTooLarge = errors.New("conn: message larger than the buffer")

// ErrTooLong is returned by BatchWriter.Write for a message longer than
// WithMaxMessage allows. It was dropped and counted.
var ErrTooLong = errors.New("conn: message longer than the maximum (WithMaxMessage)")

// ErrUnflushed is matched by the error of BatchWriter.Close when messages
// were still queued when its time ran out, and of Flush when messages it
// waited for were dropped. They are counted as dropped.
var ErrUnflushed = errors.New("conn: messages left unwritten")

// A BatchOption configures a BatchWriter.
type BatchOption interface {
	applyBatch(*batchConfig)
}

type batchOptionFunc func(*batchConfig)

func (f batchOptionFunc) applyBatch(c *batchConfig) { f(c) }

type batchConfig struct {
	size         int
	maxBatch     int
	waitWhenFull time.Duration
	closeTimeout time.Duration
	dropHook     func(DropReport)
	dropInterval time.Duration
	maxMessage   int

	// The spool (spool.go).
	spool     bool
	spoolDir  string
	spoolMax  int64
	durable   bool
	syncEvery time.Duration

	// Acknowledged delivery (ack.go).
	acks        AckProtocol
	window      int
	windowBytes int
	ackTimeout  time.Duration
}

// WithBufferSize bounds what is queued: accepted and not yet written
// (DefaultBufferSize). A message of n bytes takes n + MessageOverhead, so
// the bound holds for messages of every size, 0 included; the memory the
// BatchWriter holds stays below twice the buffer plus three segments (see
// NewBatchWriter). A value below 1 keeps the default; values above 64 GiB
// are taken as 64 GiB, and on 32-bit platforms (386, arm, mips, ...)
// values above 256 MiB as 256 MiB: the memory bound (twice the buffer) and
// the collector's headroom must fit in their address space.
func WithBufferSize(bytes int) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if bytes > 0 {
			c.size = min(bytes, maxBufferSize)
		}
	})
}

// WithMaxBatch bounds the bytes of one write on the connection: queued
// messages are coalesced up to this size, and a larger message goes alone.
// The default is DefaultMaxBatch on stream sockets and DefaultDatagramSize on
// datagram sockets ("udp", "udp4", "udp6", "unixgram"), where every write is
// one datagram. A value below 1 keeps the default.
func WithMaxBatch(bytes int) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if bytes > 0 {
			c.maxBatch = bytes
		}
	})
}

// WithMaxMessage makes Write refuse a message longer than bytes with
// ErrTooLong (counted in Rejected and reported like every drop), rather
// than send what the peer would cut or refuse. With acknowledged delivery
// it keeps messages within what the collector takes whole: rsyslog cuts a
// message longer than its maxMessageSize (8096 bytes by default, see
// relp.RsyslogMaxMessage) and still acknowledges it, and imrelp with
// oversizeMode="abort" ends the session instead, at every replay. The
// limit counts every byte written, a trailing newline included. A value below 1 means no limit, the default.
func WithMaxMessage(bytes int) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		c.maxMessage = math.MaxInt
		if bytes > 0 {
			c.maxMessage = bytes
		}
	})
}

// WithWaitWhenFull makes Write wait up to d for room when the buffer is full,
// instead of dropping the message at once. Zero, the default, drops at once.
func WithWaitWhenFull(d time.Duration) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if d > 0 {
			c.waitWhenFull = d
		}
	})
}

// WithCloseTimeout bounds how long Close spends writing what is queued
// (DefaultCloseTimeout). A value below 1 keeps the default.
func WithCloseTimeout(d time.Duration) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if d > 0 {
			c.closeTimeout = d
		}
	})
}

// QueueStats describes a BatchWriter's queue.
type QueueStats struct {
	Messages int // messages accepted and not yet written or dropped
	Bytes    int // their bytes (without MessageOverhead)
	// Unacked is how many of them were written and wait for an
	// acknowledgement (WithAcks); 0 without acks.
	Unacked int
	// OldestAge is how long the oldest of them has waited since the
	// background writer first saw it, which is within one write of when it
	// was queued (Write reads no clock). Zero when the queue is empty.
	OldestAge time.Duration
}

// BatchStats is a snapshot of a BatchWriter's counters. Every message
// accepted is, in the end, written or dropped at Close; a message rejected
// by Write is dropped at once. Counters only grow.
type BatchStats struct {
	Queue         QueueStats
	Accepted      uint64 // messages Write accepted
	AcceptedBytes uint64
	Written       uint64 // messages handed whole to a connection
	WrittenBytes  uint64
	Dropped       uint64 // Rejected + Discarded
	DroppedBytes  uint64
	Rejected      uint64 // messages Write refused: ErrBufferFull, ErrTooLarge, ErrTooLong, ErrClosed
	Discarded     uint64 // messages accepted, then dropped unwritten: left at Close, too large for a datagram, or spooled and read back damaged
	Retried       uint64 // messages partly written on a connection that failed, written again whole
	Writes        uint64 // writes on the connection: batches

	// With acknowledged delivery (WithAcks). Written counts a message's
	// first write (a write that failed part-way counts: the peer may have
	// taken its messages); Discarded includes Refused.
	Acked      uint64 // messages the peer acknowledged
	AckedBytes uint64
	Replayed   uint64 // messages written again on a new connection because they were not acknowledged: the only duplicates
	Refused    uint64 // messages the peer refused (a RELP answer other than 200): dropped, reported, not sent again

	// With a spool (WithSpool): Accepted counts the messages recovered from
	// it as they go to memory; Queue counts what is on disk too.
	Spool SpoolStats
	// Left counts the messages that Close left in the spool undelivered,
	// for the next BatchWriter on the directory: neither written nor
	// dropped.
	Left uint64
}

func isDatagram(network string) bool {
	return strings.HasPrefix(network, "udp") || network == "unixgram"
}
