package conn_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
	return &lineSession{br: br, panicIn: p.panicIn}, nil
}

type lineSession struct {
	br      *bufio.Reader
	panicIn string
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
}

func newAckServer(t testing.TB) *ackServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &ackServer{t: t, ln: ln, dropAt: -1, greeting: "OK\n", changed: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

func (s *ackServer) Addr() string { return s.ln.Addr().String() }

func (s *ackServer) Close() {
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
	resetAfter := s.resetAfterHello
	s.mu.Unlock()
	if resetAfter > 0 {
		time.Sleep(resetAfter)
		c.(*net.TCPConn).SetLinger(0)
		return
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
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
		_, err = c.Write(answer)
		s.mu.Unlock()
		if err != nil {
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
