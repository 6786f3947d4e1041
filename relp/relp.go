package relp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp/internal/frame"
)

// MaxResponse bounds the data of a frame the server sends (DATALEN): a
// larger one is a protocol error, so a hostile or broken server cannot make
// the client allocate more. It is librelp's default maximum data size;
// answers are far smaller (an rsp to a message is "200 OK").
const MaxResponse = 128 << 10

// RsyslogMaxMessage is the longest message rsyslog's RELP input (imrelp)
// takes whole with its default sizes: the bytes of the syslog message, its
// header included, not counting a trailing newline (AppendBatch strips
// one). rsyslog acknowledges a longer message and cuts it to this length
// (its global maxMessageSize, 8096 bytes by default, bounds it whatever
// imrelp's maxDataSize says; measured with rsyslog 8.2302, librelp 1.11).
// conn.WithMaxMessage(RsyslogMaxMessage) makes Write refuse such a message
// instead; it counts every byte written, so a message of exactly this
// length followed by a newline is refused too, one byte on the safe side.
// A collector configured with global(maxMessageSize="64k") and
// maxDataSize="64k" takes 65,536 bytes.
const RsyslogMaxMessage = 8096

// MaxMessage is the longest message RELP can frame (DATALEN has at most 9
// digits); AppendBatch truncates longer ones.
const MaxMessage = frame.MaxTxnr

// ErrProtocol is matched by the error of Open or ReadAck when the server
// sent bytes RELP does not allow there: a malformed frame, a frame beyond
// a bound, an answer to a transaction that is not outstanding, a command a
// server may not send. The error quotes a few bytes of the bad input.
var ErrProtocol = errors.New("relp: protocol error")

// ErrServerClose is returned by ReadAck (or Open) when the server sent the
// "serverclose" hint: it is closing the session. Messages not acknowledged
// then were not taken; a BatchWriter sends them again on a new connection.
var ErrServerClose = errors.New("relp: the server closes the session (serverclose)")

// A RefusedError is the server's answer other than 200: to the open
// command (Open returns it) or to a message (in Ack.Err). It matches
// conn.ErrAckRefused.
type RefusedError struct {
	Code int    // the answer's code, e.g. 500
	Text string // the answer's human-readable text, at most 80 bytes kept
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("relp: refused by the server: %03d %q", e.Code, e.Text)
}

// Unwrap returns conn.ErrAckRefused.
func (e *RefusedError) Unwrap() error { return conn.ErrAckRefused }

// A Protocol is RELP, the client side, as a conn.AckProtocol. It holds
// only its options: one Protocol serves any number of connections, and
// its methods may be called concurrently.
type Protocol struct {
	software string
}

// An Option configures a Protocol.
type Option func(*Protocol)

// DefaultSoftware is the relp_software offer sent by default.
const DefaultSoftware = "conn,,https://github.com/seed44b27a20/conn"

// WithSoftware sets the relp_software offer sent in the open command: by
// convention "name,version,URL" (DefaultSoftware). LF and other control
// bytes are dropped from it: they would end the offer. An empty s sends no
// relp_software offer (it is optional).
func WithSoftware(s string) Option {
	return func(p *Protocol) {
		p.software = string(bytes.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return -1
			}
			return r
		}, []byte(s)))
	}
}

// New returns RELP with the options given, for conn.WithAcks.
func New(opts ...Option) *Protocol {
	p := &Protocol{software: DefaultSoftware}
	for _, o := range opts {
		if o != nil {
			o(p)
		}
	}
	return p
}

// Open sends the open command (txnr 1, offering relp_version=0, the
// relp_software and commands=syslog) and reads the server's answer. It
// blocks until the answer arrives or rw fails. It returns a
// *RefusedError (matching conn.ErrAckRefused) if the server answers other
// than 200, an error matching conn.ErrAckRefused if the server does not
// offer the syslog command or offers a relp_version above 0, ErrServerClose
// if the server says it closes, an error matching ErrProtocol for a
// malformed answer, and rw's errors as they are. A missing relp_version
// offer is accepted, as librelp does.
func (p *Protocol) Open(rw io.ReadWriter) (conn.AckSession, error) {
	offers := make([]byte, 0, 128)
	offers = append(offers, "relp_version=0"...)
	if p.software != "" {
		offers = append(offers, "\nrelp_software="...)
		offers = append(offers, p.software...)
	}
	offers = append(offers, "\ncommands=syslog"...)
	if _, err := rw.Write(frame.Append(nil, 1, "open", offers)); err != nil {
		return nil, err
	}
	s := &session{fr: frame.NewReader(bufio.NewReaderSize(rw, 16<<10), MaxResponse), next: 2}
	f, err := s.read()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the server closed before answering
		}
		return nil, err
	}
	if string(f.Cmd) == "serverclose" && f.Txnr == 0 {
		return nil, ErrServerClose
	}
	if string(f.Cmd) != "rsp" || f.Txnr != 1 {
		return nil, s.protocolError("expected the answer to open (1 rsp)", f)
	}
	code, text, rest, ok := parseRsp(f.Data)
	switch {
	case !ok:
		return nil, s.protocolError("malformed answer to open", f)
	case code != 200:
		return nil, &RefusedError{Code: code, Text: string(text)}
	}
	syslog := false
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		name, value, _ := bytes.Cut(line, []byte{'='})
		switch string(name) {
		case "relp_version":
			v, err := strconv.ParseUint(string(value), 10, 32)
			if err != nil {
				return nil, s.protocolError("relp_version offer not a number", f)
			}
			if v > 0 {
				return nil, fmt.Errorf("%w: relp: the server speaks relp_version=%d, this client 0", conn.ErrAckRefused, v)
			}
		case "commands":
			for c := range bytes.SplitSeq(value, []byte{','}) {
				syslog = syslog || string(c) == "syslog"
			}
		}
	}
	if !syslog {
		return nil, fmt.Errorf("%w: relp: the server does not offer the syslog command", conn.ErrAckRefused)
	}
	return s, nil
}

// Entry states.
const (
	pending = iota
	taken
	refused
)

// An entry is a message sent and not yet reported by ReadAck.
type entry struct {
	seq   uint64 // the BatchWriter's number
	txnr  uint32
	state uint8
	err   *RefusedError
}

// session is one connection's RELP session. The writer's goroutine
// (AppendBatch, AppendClose) and the reader's (ReadAck) share the queue of
// outstanding messages, under mu: taken once per batch and once per
// frame read, never per message sent.
type session struct {
	fr   *frame.Reader // ReadAck's only
	err  error         // ReadAck's only: sticky once set
	next uint32        // AppendBatch's and AppendClose's only: the next txnr

	mu         sync.Mutex
	q          []entry // outstanding, in txnr order, from q[head]
	head       int
	closeTxnr  uint32 // the close command's txnr; 0 until AppendClose
	closeAcked bool
}

// AppendBatch frames each message as a syslog command, with txnrs 2, 3,
// ... (1 was open's; after 999,999,999 comes 1), and records it as
// outstanding. One trailing LF of a message is stripped: loggers end lines
// with one, and RELP frames the message itself (rsyslog would otherwise
// keep the LF in the message). Messages longer than MaxMessage are
// truncated. It allocates nothing but dst's and the queue's growth.
func (s *session) AppendBatch(dst []byte, first uint64, msgs [][]byte) []byte {
	size := 0
	for _, m := range msgs {
		size += len(m) + len("999999999 syslog 999999999 \n")
	}
	dst = slices.Grow(dst, size)
	start := s.next
	for _, m := range msgs {
		if n := len(m); n > 0 && m[n-1] == '\n' {
			m = m[:n-1]
		}
		if len(m) > MaxMessage {
			m = m[:MaxMessage]
		}
		dst = frame.Append(dst, s.next, "syslog", m)
		s.next = frame.NextTxnr(s.next)
	}
	// Recorded before the bytes are written, so no answer can come first;
	// the framing above was done outside the lock ReadAck takes.
	s.mu.Lock()
	s.q = slices.Grow(s.q, len(msgs))
	t := start
	for i := range msgs {
		s.q = append(s.q, entry{seq: first + uint64(i), txnr: t})
		t = frame.NextTxnr(t)
	}
	s.mu.Unlock()
	return dst
}

// AppendClose appends the close command. ReadAck returns io.EOF once the
// server answers it (librelp answers "rsp 0", without data).
func (s *session) AppendClose(dst []byte) []byte {
	s.mu.Lock()
	s.closeTxnr = s.next
	s.mu.Unlock()
	dst = frame.Append(dst, s.next, "close", nil)
	s.next = frame.NextTxnr(s.next)
	return dst
}

// ReadAck blocks until the server's answers let it report something:
//
//   - Ack{Through: n}: every message below n was answered 200, cumulatively.
//     Answers may come in any order (the specification allows it; librelp
//     answers in order): only the contiguous prefix answered is reported.
//   - Ack{Through: seq+1, Err: *RefusedError}: the server answered message
//     seq other than 200. The messages before it are reported first, by an
//     Ack of their own, so each Ack carries at most one refusal.
//   - io.EOF once the server answered the close command (after the Acks
//     still to report), or when the connection ends between frames.
//   - ErrServerClose on the "serverclose" hint.
//   - an error matching ErrProtocol: a malformed frame, DATALEN above
//     MaxResponse, an answer to a txnr not outstanding (never sent, or
//     answered already), a command other than rsp or serverclose, or an
//     answer without a code.
//   - io.ErrUnexpectedEOF if the connection ends inside a frame, and the
//     connection's other errors as they are.
//
// Acks resolved before an error are reported before it. After an error,
// every call returns it again.
func (s *session) ReadAck() (conn.Ack, error) {
	for {
		// Answers already buffered are taken together: one Ack for many
		// wakes the writer once.
		if s.err != nil || !s.fr.Ready() {
			if a, ok := s.report(); ok {
				return a, nil
			}
		}
		if s.err != nil {
			return conn.Ack{}, s.err
		}
		f, err := s.read()
		if err == nil {
			err = s.answer(f)
		}
		if err != nil {
			s.err = err
		}
	}
}

// report pops what the answers so far resolve, if anything.
func (s *session) report() (conn.Ack, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var a conn.Ack
	ok := false
	for ; s.head < len(s.q); s.head++ {
		e := &s.q[s.head]
		if e.state == pending {
			break
		}
		if e.state == refused {
			if ok {
				break // the taken ones before it first
			}
			a, ok = conn.Ack{Through: e.seq + 1, Err: e.err}, true
			e.err = nil
			s.head++
			break
		}
		a, ok = conn.Ack{Through: e.seq + 1}, true
	}
	switch {
	case s.head == len(s.q):
		s.q, s.head = s.q[:0], 0
	case s.head > cap(s.q)/2:
		n := copy(s.q, s.q[s.head:])
		s.q, s.head = s.q[:n], 0
	}
	if !ok && s.closeAcked && s.err == nil {
		s.err = io.EOF
	}
	return a, ok
}

func (s *session) read() (frame.Frame, error) {
	f, err := s.fr.Read()
	var fe *frame.Error
	if errors.As(err, &fe) {
		err = fmt.Errorf("%w: %v", ErrProtocol, fe)
	}
	return f, err
}

// answer records what frame f says.
func (s *session) answer(f frame.Frame) error {
	switch string(f.Cmd) {
	case "rsp":
	case "serverclose":
		if f.Txnr != 0 {
			return s.protocolError("serverclose hint with a txnr other than 0", f)
		}
		return ErrServerClose
	default:
		return s.protocolError("command a server may not send", f)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Txnr != 0 && f.Txnr == s.closeTxnr && !s.closeAcked {
		s.closeAcked = true // any answer: the server closes anyway
		return nil
	}
	e := s.find(f.Txnr)
	if e == nil {
		return s.protocolError("answer to a txnr not outstanding", f)
	}
	code, text, _, ok := parseRsp(f.Data)
	if !ok {
		return s.protocolError("malformed answer", f)
	}
	if code == 200 {
		e.state = taken
	} else {
		e.state, e.err = refused, &RefusedError{Code: code, Text: string(text)}
	}
	return nil
}

// find returns the pending entry of txnr, or nil. The outstanding txnrs
// are consecutive (modulo the wrap), so its place is computed, not sought.
func (s *session) find(txnr uint32) *entry {
	if s.head == len(s.q) || txnr == 0 || txnr > frame.MaxTxnr {
		return nil
	}
	d := (int64(txnr) - int64(s.q[s.head].txnr) + frame.MaxTxnr) % frame.MaxTxnr
	if d >= int64(len(s.q)-s.head) {
		return nil
	}
	e := &s.q[s.head+int(d)]
	if e.txnr != txnr || e.state != pending {
		return nil
	}
	return e
}

func (s *session) protocolError(what string, f frame.Frame) error {
	near := f.Data
	if len(near) > 32 {
		near = near[:32]
	}
	return fmt.Errorf("%w: %s: %d %s %d %q", ErrProtocol, what, f.Txnr, f.Cmd, len(f.Data), near)
}

// parseRsp splits an rsp's data: a 3-digit code, then optionally SP and a
// human-readable text up to LF, then optionally LF and command data.
// librelp writes the SP always; a missing one is accepted.
func parseRsp(d []byte) (code int, text, rest []byte, ok bool) {
	if len(d) < 3 || !isDigit(d[0]) || !isDigit(d[1]) || !isDigit(d[2]) {
		return 0, nil, nil, false
	}
	code = int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0')
	d = d[3:]
	if len(d) > 0 && d[0] == ' ' {
		d = d[1:]
	} else if len(d) > 0 && d[0] != '\n' {
		return 0, nil, nil, false
	}
	text, rest, _ = bytes.Cut(d, []byte{'\n'})
	if len(text) > 80 {
		text = text[:80]
	}
	return code, text, rest, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
