package bench

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// line is what every Write benchmark writes: a 51-byte log line.
var line = []byte("level=info msg=\"request served\" status=200 dur=3ms\n")

func init() {
	if len(line) != 51 {
		panic("bench: line is not 51 bytes")
	}
}

// memConn is a net.Conn whose Write does nothing but return len(b): the
// cheapest connection there can be, so that a benchmark writing on it
// measures the manager around the Write. It is safe for concurrent use. It
// has no file descriptor, so conn's liveness check does not apply to it.
type memConn struct{}

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

func (memConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (memConn) Write(b []byte) (int, error)      { return len(b), nil }
func (memConn) Close() error                     { return nil }
func (memConn) LocalAddr() net.Addr              { return memAddr{} }
func (memConn) RemoteAddr() net.Addr             { return memAddr{} }
func (memConn) SetDeadline(time.Time) error      { return nil }
func (memConn) SetReadDeadline(time.Time) error  { return nil }
func (memConn) SetWriteDeadline(time.Time) error { return nil }

// server is a TCP server on 127.0.0.1 whose port survives stop and start,
// so that clients can reconnect to the same address. It either reads and
// discards what it receives (one goroutine and a 256 KiB buffer per
// connection) or, for the footprint benchmark, only holds the accepted
// connections, without a goroutine or buffer for them.
type server struct {
	addr    string
	discard bool

	life     sync.Mutex // serialises start, stop and close
	closed   bool
	wg       sync.WaitGroup
	accepted atomic.Int64
	received atomic.Int64 // bytes read, by a discarding server

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

// newServer starts a server on a free port and registers its close with
// tb.Cleanup. capacity sizes the set of accepted connections up front.
func newServer(tb testing.TB, discard bool, capacity int) *server {
	tb.Helper()
	s := &server{addr: "127.0.0.1:0", discard: discard, conns: make(map[net.Conn]struct{}, capacity)}
	if err := s.start(); err != nil {
		tb.Fatalf("bench: listen: %v", err)
	}
	tb.Cleanup(s.close)
	return s
}

// start listens again on the server's address, retrying for up to two
// seconds while the port is held by another socket.
func (s *server) start() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return errors.New("bench: server closed")
	}
	s.mu.Lock()
	running := s.ln != nil
	s.mu.Unlock()
	if running {
		return nil
	}
	var (
		ln  net.Listener
		err error
	)
	for deadline := time.Now().Add(2 * time.Second); ; {
		ln, err = net.Listen("tcp", s.addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.ln = ln
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

func (s *server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		s.mu.Lock()
		if s.ln != ln { // stopped meanwhile
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		if s.discard {
			// Allocated here so that it is done when waitAccepted returns,
			// before a benchmark starts counting allocations.
			buf := make([]byte, 256<<10)
			s.wg.Add(1)
			go s.read(c, buf)
		}
		s.accepted.Add(1)
	}
}

func (s *server) read(c net.Conn, buf []byte) {
	defer s.wg.Done()
	for {
		n, err := c.Read(buf)
		s.received.Add(int64(n))
		if err != nil {
			break
		}
	}
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// stop closes the listener and every accepted connection, and waits for the
// server's goroutines. Clients then see their peer gone.
func (s *server) stop() {
	s.life.Lock()
	defer s.life.Unlock()
	s.stopLocked()
}

func (s *server) stopLocked() {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	conns := s.conns
	s.conns = make(map[net.Conn]struct{})
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for c := range conns {
		c.Close()
	}
	s.wg.Wait()
}

func (s *server) close() {
	s.life.Lock()
	defer s.life.Unlock()
	s.closed = true
	s.stopLocked()
}

// waitAccepted waits until the server has accepted n connections in all.
func (s *server) waitAccepted(tb testing.TB, n int64, timeout time.Duration) {
	tb.Helper()
	for deadline := time.Now().Add(timeout); s.accepted.Load() < n; {
		if time.Now().After(deadline) {
			tb.Fatalf("bench: server accepted %d connections, want %d", s.accepted.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// tracker dials through net.Dial and remembers the connections, so that a
// benchmark can close the sockets of a go-kit Manager, which has no Close.
// (Its goroutine still lives as long as the process.)
type tracker struct {
	mu    sync.Mutex
	conns []net.Conn
}

func newTracker(capacity int) *tracker {
	return &tracker{conns: make([]net.Conn, 0, capacity)}
}

func (t *tracker) dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err == nil {
		t.mu.Lock()
		t.conns = append(t.conns, c)
		t.mu.Unlock()
	}
	return c, err
}

func (t *tracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		c.Close()
	}
	t.conns = t.conns[:0]
}

// writeUntil calls w.Write(line) until it returns a nil error, pausing
// briefly between attempts, and fails the benchmark after timeout.
func writeUntil(tb testing.TB, w io.Writer, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, err := w.Write(line)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("bench: no successful Write within %v: %v", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// pollInterval is the pause between attempts of a polling loop. The Go
// runtime's timers make it about a millisecond in effect.
const pollInterval = 100 * time.Microsecond
