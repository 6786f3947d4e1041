// Package relptest runs an in-process RELP server on 127.0.0.1 for tests
// and benchmarks, as net/http/httptest runs HTTP servers.
//
// The server speaks what librelp's server speaks to a client: it answers
// open (txnr 1, offers relp_version=0 and commands=syslog), syslog (200 OK
// unless WithAnswer decides otherwise) and close ("rsp 0", then it closes
// the connection). It checks each txnr is the one after the previous
// (1 after 999,999,999) and DATALEN against its bound (WithMaxData);
// anything else ends the connection, and is recorded (Stats.Errors), never
// a panic. Reads and writes are buffered, and answers are flushed when no
// more input is buffered, so it can serve throughput benchmarks.
//
// Knobs for failures: WithAnswer (refusals), WithOpenAnswer (refused or
// odd handshakes), ServerClose (the serverclose hint), Reset (RST every
// connection), Stall and Release (answers held back), CloseAfter
// (messages read, never answered, then the connection closed).
package relptest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/relp/internal/frame"
)

// DefaultMaxData is the default bound on a frame's data the server
// accepts: librelp's default.
const DefaultMaxData = 128 << 10

// DefaultOpenAnswer is the data of the server's default answer to open.
const DefaultOpenAnswer = "200 OK\nrelp_version=0\nrelp_software=relptest\ncommands=syslog"

// An Option configures a Server.
type Option func(*Server)

// WithAnswer makes f decide the answer to each message: its code (200
// takes it; anything else refuses it) and text. f is called on the
// goroutine of the message's connection, concurrently for different
// connections, in the order of each connection's messages; msg is valid
// only during the call.
func WithAnswer(f func(msg []byte) (code int, text string)) Option {
	return func(s *Server) { s.answerFn = f }
}

// WithOpenAnswer makes the server answer open with data (e.g. "500 go
// away", or offers without commands=syslog) instead of DefaultOpenAnswer.
// The connection stays open whatever the answer.
func WithOpenAnswer(data string) Option {
	return func(s *Server) { s.openAnswer = data }
}

// WithMaxData bounds a frame's DATALEN (DefaultMaxData): a larger frame
// ends its connection, like librelp's oversizeMode "abort".
func WithMaxData(n int) Option {
	return func(s *Server) {
		if n > 0 {
			s.maxData = n
		}
	}
}

// WithoutRecording keeps only counts, not the messages: for benchmarks.
func WithoutRecording() Option {
	return func(s *Server) { s.noRecord = true }
}

// A Server is a RELP server on 127.0.0.1. Its methods may be called
// concurrently, from any goroutine.
type Server struct {
	ln         net.Listener
	answerFn   func([]byte) (int, string)
	openAnswer string
	maxData    int
	noRecord   bool
	wg         sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	conns     map[*serverConn]struct{}
	perConn   [][]string
	all       []string
	stats     Stats
	stalled   bool
	dropLeft  int           // CloseAfter's messages still to read unanswered
	changed   chan struct{} // closed when stats change, if Wait made it
	nextIndex int
}

// Stats are a Server's counts.
type Stats struct {
	Conns    int     // connections accepted
	Opens    int     // open commands answered
	Closes   int     // close commands answered
	Messages int     // syslog messages read, answered or not
	Refused  int     // messages answered other than 200
	Errors   []error // why connections ended on bad input from the client
}

// NewServer starts a server on 127.0.0.1 with a port of its own. If tb is
// not nil, a failure to listen fails the test and Close runs at its
// cleanup; if tb is nil, a failure to listen panics, and the caller must
// Close the server.
func NewServer(tb testing.TB, opts ...Option) *Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if tb != nil {
			tb.Helper()
			tb.Fatalf("relptest: %v", err)
		}
		panic(fmt.Sprintf("relptest: %v", err))
	}
	s := &Server{ln: ln, openAnswer: DefaultOpenAnswer, maxData: DefaultMaxData,
		conns: map[*serverConn]struct{}{}}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	s.wg.Add(1)
	go s.accept()
	if tb != nil {
		tb.Cleanup(s.Close)
	}
	return s
}

// Addr returns the server's address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server: it closes the listener and every connection, and
// returns once every goroutine the server started has ended. Closing again
// does nothing.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.ln.Close()
		for c := range s.conns {
			c.c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Errors = append([]error(nil), st.Errors...)
	return st
}

// Messages returns every message read, in the order read, over every
// connection (in order per connection; across connections, in the order
// the server read them). Messages read and never answered are included.
func (s *Server) Messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.all...)
}

// ConnMessages returns the messages read on the i-th connection accepted
// (from 0), in order; nil if there is none.
func (s *Server) ConnMessages(i int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.perConn) {
		return nil
	}
	return append([]string(nil), s.perConn[i]...)
}

// Wait blocks until cond, called with the counts under the server's lock
// each time they change, returns true; or until timeout passes, when it
// returns an error with the last counts. cond must not call the Server.
func (s *Server) Wait(timeout time.Duration, cond func(Stats) bool) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		ok, st := cond(s.stats), s.stats
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return fmt.Errorf("relptest: condition not met within %v; stats %+v", timeout, st)
		}
	}
}

// WaitMessages waits until at least n messages were read, for timeout.
func (s *Server) WaitMessages(n int, timeout time.Duration) error {
	return s.Wait(timeout, func(st Stats) bool { return st.Messages >= n })
}

// Stall holds back the answers to messages and to close from now on, on
// every connection: messages are still read and recorded. The answer to
// open is not held back.
func (s *Server) Stall() {
	s.mu.Lock()
	s.stalled = true
	s.mu.Unlock()
}

// Release sends the answers Stall held back, in order, and answers at once
// again. A connection whose close was held back is closed after them.
func (s *Server) Release() {
	s.mu.Lock()
	s.stalled = false
	conns := s.connList()
	s.mu.Unlock()
	for _, c := range conns {
		c.release()
	}
}

// ServerClose sends the serverclose hint on every connection, then closes
// them, as a librelp server does when it shuts down. The server still
// accepts new connections.
func (s *Server) ServerClose() {
	s.mu.Lock()
	conns := s.connList()
	s.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		c.bw.Write(frame.Append(nil, 0, "serverclose", nil))
		c.bw.Flush()
		c.mu.Unlock()
		c.c.Close()
	}
}

// Reset resets every connection (TCP RST: linger 0, then close), dropping
// what the server had not sent. The server still accepts new connections.
func (s *Server) Reset() {
	s.mu.Lock()
	conns := s.connList()
	s.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.c.Close()
	}
}

// CloseAfter makes the next n messages read (on any connection) go
// unanswered, and closes the connection that reads the n-th, right after
// sending the answers due before them. It fires once; n < 1 disarms it.
func (s *Server) CloseAfter(n int) {
	s.mu.Lock()
	s.dropLeft = max(n, 0)
	s.mu.Unlock()
}

func (s *Server) connList() []*serverConn {
	l := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		l = append(l, c)
	}
	return l
}

// notify wakes Wait; under s.mu.
func (s *Server) notify() {
	if s.changed != nil { // made only when someone waits: none per message otherwise
		close(s.changed)
		s.changed = nil
	}
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return // closed; Accept on loopback fails for nothing else we can mend
		}
		c := &serverConn{s: s, c: nc, bw: bufio.NewWriterSize(nc, 64<<10)}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		c.index = s.nextIndex
		s.nextIndex++
		s.perConn = append(s.perConn, nil)
		s.conns[c] = struct{}{}
		s.stats.Conns++
		s.notify()
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

type serverConn struct {
	s     *Server
	c     net.Conn
	index int

	mu      sync.Mutex // bw, held, closing
	bw      *bufio.Writer
	held    []byte // answers held back by Stall
	closing bool   // a close's answer is in held
}

func (c *serverConn) serve() {
	s := c.s
	defer s.wg.Done()
	defer func() {
		c.c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.notify()
		s.mu.Unlock()
	}()
	br := bufio.NewReaderSize(c.c, 64<<10)
	fr := frame.NewReader(br, s.maxData)
	want := uint32(1)
	open := false
	var out []byte
	for {
		f, err := fr.Read()
		if err != nil {
			var fe *frame.Error
			if errors.As(err, &fe) {
				c.fail(err)
			}
			return
		}
		if f.Txnr != want {
			c.fail(fmt.Errorf("txnr %d, want %d", f.Txnr, want))
			return
		}
		want = frame.NextTxnr(want)
		out = out[:0]
		hold, closeNow := false, false
		switch cmd := string(f.Cmd); {
		case cmd == "open" && !open:
			open = true
			out = frame.Append(out, f.Txnr, "rsp", []byte(s.openAnswer))
			s.mu.Lock()
			s.stats.Opens++
			s.notify()
			s.mu.Unlock()
		case cmd == "syslog" && open:
			code, text := 200, "OK"
			if s.answerFn != nil {
				code, text = s.answerFn(f.Data)
			}
			s.mu.Lock()
			if !s.noRecord {
				m := string(f.Data)
				s.all = append(s.all, m)
				s.perConn[c.index] = append(s.perConn[c.index], m)
			}
			s.stats.Messages++
			drop := s.dropLeft > 0
			if drop {
				s.dropLeft--
				closeNow = s.dropLeft == 0
			} else if code != 200 {
				s.stats.Refused++
			}
			hold = s.stalled
			s.notify()
			s.mu.Unlock()
			if !drop {
				out = appendRsp(out, f.Txnr, code, text)
			}
		case cmd == "close" && open:
			out = frame.Append(out, f.Txnr, "rsp", nil)
			s.mu.Lock()
			s.stats.Closes++
			hold = s.stalled
			s.notify()
			s.mu.Unlock()
			closeNow = !hold
			if hold {
				c.mu.Lock()
				c.closing = true
				c.mu.Unlock()
			}
		default:
			c.fail(fmt.Errorf("command %q with txnr %d unexpected (open: %v)", f.Cmd, f.Txnr, open))
			return
		}
		if err := c.send(out, hold, closeNow || br.Buffered() == 0); err != nil || closeNow {
			return
		}
	}
}

// send writes answers, or holds them back; flush sends what is buffered.
func (c *serverConn) send(out []byte, hold, flush bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hold || len(c.held) > 0 { // never ahead of answers held back
		c.held = append(c.held, out...)
		if flush {
			return c.bw.Flush() // the answers from before Stall
		}
		return nil
	}
	if _, err := c.bw.Write(out); err != nil {
		return err
	}
	if flush {
		return c.bw.Flush()
	}
	return nil
}

func (c *serverConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bw.Write(c.held)
	c.held = nil
	c.bw.Flush()
	if c.closing {
		c.c.Close()
	}
}

func (c *serverConn) fail(err error) {
	s := c.s
	s.mu.Lock()
	s.stats.Errors = append(s.stats.Errors, fmt.Errorf("relptest: connection %d: %w", c.index, err))
	s.notify()
	s.mu.Unlock()
}

func appendRsp(dst []byte, txnr uint32, code int, text string) []byte {
	var b [128]byte
	d := strconv.AppendInt(b[:0], int64(code), 10)
	d = append(d, ' ')
	d = append(d, text...)
	return frame.Append(dst, txnr, "rsp", d)
}
