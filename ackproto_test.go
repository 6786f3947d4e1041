package conn_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

// lineAcks is a toy acknowledging protocol for the BatchWriter's tests, so
// that they test the mechanism, not RELP: the client says "HELLO", the
// server "OK" (or "NO"); each message goes as "SEQ TEXT\n"; the server
// answers "A N" (every message below N taken) or "R SEQ REASON" (message
// SEQ refused, the ones before it taken); "BYE" ends the session and the
// server confirms with "BYE".
type lineAcks struct {
	panicIn string // "Open", "AppendBatch", "ReadAck", "AppendClose": that method panics
	noBye   bool   // AppendClose appends nothing: the protocol has no close
}

func (p lineAcks) Open(rw io.ReadWriter) (conn.AckSession, error) {
	if _, err := io.WriteString(rw, "HELLO\n"); err != nil {
		return nil, err
	}
	if p.panicIn == "Open" {
		panic("lineAcks: Open")
	}
	br := bufio.NewReader(rw)
	line, err := br.ReadString('\n')
	switch {
	case err != nil:
		return nil, err
	case line == "NO\n":
		return nil, fmt.Errorf("%w: said NO", conn.ErrAckRefused)
	case line != "OK\n":
		return nil, fmt.Errorf("lineAcks: bad greeting %q", line)
	}
	return &lineSession{br: br, panicIn: p.panicIn, noBye: p.noBye}, nil
}

type lineSession struct {
	br      *bufio.Reader
	panicIn string
	noBye   bool
}

func (s *lineSession) AppendBatch(dst []byte, first uint64, msgs [][]byte) []byte {
	if s.panicIn == "AppendBatch" {
		panic("lineAcks: AppendBatch")
	}
	for i, m := range msgs {
		dst = strconv.AppendUint(dst, first+uint64(i), 10)
		dst = append(dst, ' ')
		dst = append(dst, m...)
		dst = append(dst, '\n')
	}
	return dst
}

func (s *lineSession) ReadAck() (conn.Ack, error) {
	if s.panicIn == "ReadAck" {
		panic("lineAcks: ReadAck")
	}
	line, err := s.br.ReadString('\n')
	if err != nil {
		return conn.Ack{}, err
	}
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "BYE":
		return conn.Ack{}, io.EOF
	case len(f) == 2 && f[0] == "A":
		n, err := strconv.ParseUint(f[1], 10, 64)
		return conn.Ack{Through: n}, err
	case len(f) >= 2 && f[0] == "R":
		n, err := strconv.ParseUint(f[1], 10, 64)
		return conn.Ack{Through: n + 1, Err: fmt.Errorf("%w: %s", conn.ErrAckRefused, strings.Join(f[2:], " "))}, err
	}
	return conn.Ack{}, fmt.Errorf("lineAcks: bad answer %q", line)
}

func (s *lineSession) AppendClose(dst []byte) []byte {
	if s.panicIn == "AppendClose" {
		panic("lineAcks: AppendClose")
	}
	if s.noBye {
		return dst
	}
	return append(dst, "BYE\n"...)
}

// ackServer serves lineAcks on loopback TCP and records what it took.
type ackServer struct {
	t  testing.TB
	ln net.Listener
	wg sync.WaitGroup

	mu              sync.Mutex
	got             []string // message texts taken, in order, duplicates included
	seqs            []uint64 // their sequence numbers
	conns           []net.Conn
	opens           int
	byes            int
	refuse          func(seq uint64, text string) bool // answer R instead of A
	dropAt          int                                // after this many messages in all, reset the connection without answering the last one
	extra           func(seq uint64) string            // more answers after the one to seq
	resetAfterHello time.Duration                      // reset each connection this long after the greeting
	ackAhead        uint64                             // acknowledge this many more than taken
	stalled         bool                               // read but keep the answers until release
	pending         map[net.Conn][]byte                // the answers kept
	greeting        string                             // "OK\n" unless set; "" never answers
	changed         chan struct{}                      // closed and replaced at each message taken
	hung            bool                               // after the greeting, read and answer nothing: a stopped collector
	answerDelay     time.Duration                      // answer each message this long after reading it (all answered before closing)
	dieMidAnswer    bool                               // with answerDelay: at the end of the input, send half the answers due, then close
	holdAfterEOF    bool                               // at the end of the input, keep the connection open until Close
	hangAfter       int                                // once this many messages are taken in all, read and answer nothing more
	unanswered      int                                // messages taken whose answer dieMidAnswer never sent
	quit            chan struct{}                      // closed by Close
	closeOnce       sync.Once
}

func newAckServer(t testing.TB) *ackServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &ackServer{t: t, ln: ln, dropAt: -1, greeting: "OK\n", changed: make(chan struct{}), quit: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

func (s *ackServer) Addr() string { return s.ln.Addr().String() }

func (s *ackServer) Close() {
	s.closeOnce.Do(func() { close(s.quit) })
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *ackServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *ackServer) set(f func(s *ackServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *ackServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HELLO\n" {
		return
	}
	s.mu.Lock()
	s.opens++
	greeting := s.greeting
	s.mu.Unlock()
	if greeting == "" { // never answer
		io.Copy(io.Discard, c)
		return
	}
	if _, err := io.WriteString(c, greeting); err != nil || greeting != "OK\n" {
		return
	}
	s.mu.Lock()
	resetAfter, hung, delay, dieMid := s.resetAfterHello, s.hung, s.answerDelay, s.dieMidAnswer
	s.mu.Unlock()
	if resetAfter > 0 {
		time.Sleep(resetAfter)
		c.(*net.TCPConn).SetLinger(0)
		return
	}
	if hung {
		<-s.quit
		return
	}
	write := c.Write
	if delay > 0 {
		// A writer that sends each answer delay after its message was
		// read; at the end of the input it sends those still due (half of
		// them with dieMidAnswer), then the connection closes.
		type due struct {
			at     time.Time
			answer []byte
		}
		var (
			qmu    sync.Mutex
			queue  []due
			ended  bool
			notify = make(chan struct{}, 1)
			done   = make(chan struct{})
		)
		go func() {
			defer close(done)
			for {
				qmu.Lock()
				if len(queue) == 0 {
					e := ended
					qmu.Unlock()
					if e {
						return
					}
					<-notify
					continue
				}
				a := queue[0]
				queue = queue[1:]
				qmu.Unlock()
				time.Sleep(time.Until(a.at))
				c.Write(a.answer)
			}
		}()
		defer func() { <-done }()
		defer func() {
			qmu.Lock()
			if dieMid {
				keep := len(queue) / 2
				s.mu.Lock()
				s.unanswered += len(queue) - keep
				s.mu.Unlock()
				queue = queue[:keep]
			}
			ended = true
			qmu.Unlock()
			select {
			case notify <- struct{}{}:
			default:
			}
		}()
		write = func(b []byte) (int, error) {
			qmu.Lock()
			queue = append(queue, due{time.Now().Add(delay), b})
			qmu.Unlock()
			select {
			case notify <- struct{}{}:
			default:
			}
			return len(b), nil
		}
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			s.mu.Lock()
			hold := s.holdAfterEOF && err == io.EOF
			s.mu.Unlock()
			if hold {
				<-s.quit
			}
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "BYE" {
			s.mu.Lock()
			s.byes++
			s.mu.Unlock()
			io.WriteString(c, "BYE\n")
			return
		}
		seqText, text, _ := strings.Cut(line, " ")
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil {
			s.t.Errorf("ackServer: bad line %q", line)
			return
		}
		s.mu.Lock()
		if s.dropAt == len(s.got) {
			s.dropAt = -1
			s.mu.Unlock()
			c.(*net.TCPConn).SetLinger(0)
			return
		}
		s.got = append(s.got, text)
		s.seqs = append(s.seqs, seq)
		close(s.changed)
		s.changed = make(chan struct{})
		answer := fmt.Appendf(nil, "A %d\n", seq+1+s.ackAhead)
		if s.refuse != nil && s.refuse(seq, text) {
			answer = fmt.Appendf(nil, "R %d no thanks\n", seq)
		}
		if s.extra != nil {
			answer = append(answer, s.extra(seq)...)
		}
		if s.stalled {
			s.pending[c] = append(s.pending[c], answer...)
			s.mu.Unlock()
			continue
		}
		_, err = write(answer)
		hang := s.hangAfter > 0 && len(s.got) >= s.hangAfter
		s.mu.Unlock()
		if err != nil {
			return
		}
		if hang {
			<-s.quit
			return
		}
	}
}

// resetAll resets every connection (RST), dropping the answers kept.
func (s *ackServer) resetAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	s.conns = nil
	if s.pending != nil {
		s.pending = make(map[net.Conn][]byte)
	}
}

// stall makes the server keep its answers until release.
func (s *ackServer) stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = true
	s.pending = make(map[net.Conn][]byte)
}

// release sends the answers kept, and answers at once again.
func (s *ackServer) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = false
	for c, p := range s.pending {
		c.Write(p)
	}
	s.pending = nil
}

// Got returns the texts taken so far.
func (s *ackServer) Got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// awaitGot waits until the server has taken at least n messages.
func (s *ackServer) awaitGot(n int, within time.Duration) {
	s.t.Helper()
	deadline := time.After(within)
	for {
		s.mu.Lock()
		got, changed := len(s.got), s.changed
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			s.t.Fatalf("server took %d messages, want %d within %v", got, n, within)
		}
	}
}

// awaitOpens waits until the server has seen n handshakes.
func (s *ackServer) awaitOpens(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var opens int
		s.set(func(s *ackServer) { opens = s.opens })
		if opens >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handshakes within %v, want %d", opens, within, n)
		}
		time.Sleep(2 * time.Millisecond) // polling a count the server keeps; bounded
	}
}

// newAckWriter returns a Manager and an acknowledging BatchWriter to s,
// closed at the end of the test.
func newAckWriter(t *testing.T, s *ackServer, opts ...conn.BatchOption) (*conn.Manager, *conn.BatchWriter) {
	t.Helper()
	return newAckWriterWith(t, s, lineAcks{}, opts...)
}

func newAckWriterWith(t *testing.T, s *ackServer, p conn.AckProtocol, opts ...conn.BatchOption) (*conn.Manager, *conn.BatchWriter) {
	t.Helper()
	m := conn.New("tcp", s.Addr(), conn.WithBackoff(time.Millisecond, 20*time.Millisecond), conn.WithLogger(log.NewNopLogger()))
	w := conn.NewBatchWriter(m, append([]conn.BatchOption{conn.WithAcks(p)}, opts...)...)
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	return m, w
}

func writeNumbered(t *testing.T, w *conn.BatchWriter, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := fmt.Fprintf(w, "m%06d", i); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
}

// checkAllOnce checks that the server took messages from..to, each at
// least once, in order of first arrival, and returns the duplicates.
func checkAllOnce(t *testing.T, got []string, n int) (dups int) {
	t.Helper()
	seen := make(map[string]int)
	next := 0
	for _, g := range got {
		seen[g]++
		if seen[g] > 1 {
			dups++
			continue
		}
		if want := fmt.Sprintf("m%06d", next); g != want {
			t.Fatalf("first arrivals out of order: got %q, want %q", g, want)
		}
		next++
	}
	if next != n {
		t.Fatalf("server took %d distinct messages, want %d", next, n)
	}
	return dups
}

// checkInvariants checks what Stats must satisfy at all times.
func checkInvariants(t *testing.T, st conn.BatchStats, window int) {
	t.Helper()
	if st.Accepted != st.Acked+st.Discarded+uint64(st.Queue.Messages) || st.Queue.Messages < 0 || st.Queue.Bytes < 0 ||
		st.Queue.Unacked > window || st.Queue.Unacked < 0 || st.Written > st.Accepted || st.Acked > st.Written ||
		st.Acked+st.Refused > st.Written || st.AckedBytes > st.WrittenBytes {
		t.Errorf("stats do not add up: %+v", st)
	}
}

// sample checks the invariants of w's Stats until stop is closed.
func sample(t *testing.T, w *conn.BatchWriter, window int, stop chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			checkInvariants(t, w.Stats(), window)
			time.Sleep(100 * time.Microsecond)
		}
	}()
}

// stalledWithRemainder sets up a writer whose window in bytes has room
// left, but less than the next message: 1 byte in flight, unacknowledged
// (the server stalls), and a 1000-byte message next, with a 1000-byte
// window.
func stalledWithRemainder(t *testing.T, opts ...conn.BatchOption) (*ackServer, *conn.Manager, *conn.BatchWriter) {
	t.Helper()
	s := newAckServer(t)
	s.stall()
	m, w := newAckWriter(t, s, append([]conn.BatchOption{conn.WithWindow(128, 1000)}, opts...)...)
	if _, err := w.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	s.awaitGot(1, 10*time.Second)
	if _, err := w.Write(bytes.Repeat([]byte("b"), 1000)); err != nil {
		t.Fatal(err)
	}
	return s, m, w
}

// faultDialer wraps each connection; once armed, the next Write carrying
// messages writes only its first line, waits until the reply to it has been
// read by the session's reader, and fails: a write that failed after the
// peer took part of it (a reset mid-write, a write timeout).
type faultDialer struct {
	armed atomic.Bool
	read  chan struct{} // closed when a reply is read after the fault
	once  sync.Once
}

var errInjected = errors.New("injected write failure")

func (d *faultDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: c, d: d}, nil
}

type faultConn struct {
	net.Conn
	d       *faultDialer
	faulted atomic.Bool
}

func (c *faultConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.faulted.Load() {
		c.d.once.Do(func() { close(c.d.read) })
	}
	return n, err
}

func (c *faultConn) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, []byte("HELLO")) || !c.d.armed.CompareAndSwap(true, false) {
		return c.Conn.Write(b)
	}
	line := b[:bytes.IndexByte(b, '\n')+1]
	c.faulted.Store(true)
	n, err := c.Conn.Write(line)
	if err != nil {
		return n, err
	}
	select {
	case <-c.d.read:
		time.Sleep(50 * time.Millisecond) // the reader posts what it read
	case <-time.After(5 * time.Second):
	}
	return n, errInjected
}

func newFaultWriter(t *testing.T, s *ackServer, opts ...conn.BatchOption) (*faultDialer, *conn.BatchWriter) {
	t.Helper()
	d := &faultDialer{read: make(chan struct{})}
	d.armed.Store(true)
	m := conn.New("tcp", s.Addr(), conn.WithDialer(d.dial), conn.WithBackoff(time.Millisecond, 20*time.Millisecond), conn.WithLogger(log.NewNopLogger()))
	w := conn.NewBatchWriter(m, append([]conn.BatchOption{conn.WithAcks(lineAcks{})}, opts...)...)
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	return d, w
}
