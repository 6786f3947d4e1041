package testnet

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// neverReaderRecvBuffer is the SO_RCVBUF requested for NeverReader's
// sockets. Linux doubles the value for bookkeeping overhead, so the
// connection ends up holding under 8 KiB of the client's data.
const neverReaderRecvBuffer = 4 << 10

// neverReaderMSS is the TCP_MAXSEG NeverReader's sockets advertise. On
// loopback the MSS is otherwise about 64 KiB, and Linux sizes the client's
// send buffer from MSS × congestion window: measured on Linux 6.18 with
// default tcp_wmem, a client could write about 2.8 MB before blocking with
// the default MSS, but about 130 KB with MSS 536.
const neverReaderMSS = 536

// NeverReader is a TCP server on 127.0.0.1 that accepts connections and
// never reads from them. Its listening socket gets a small receive buffer
// (4 KiB) and a small MSS (536) before listen, so accepted sockets inherit
// them and advertise a tiny window and small segments from the handshake
// on. A client's writes then block as soon as its own kernel send buffer is
// full — on Linux loopback after roughly 100-200 KB (a client can shrink
// that further with SetWriteBuffer) — and a write with a deadline fails
// with os.ErrDeadlineExceeded.
//
// All methods are safe for concurrent use. Close (also run by tb.Cleanup)
// closes the listener and every held connection (the peers see a reset if
// they had written unread data) and waits for the accept goroutine; it is
// idempotent and bounded.
type NeverReader struct {
	ln net.Listener
	wg sync.WaitGroup

	signal   // mu guards the fields below
	conns    []net.Conn
	accepted int
	closed   bool
}

// NewNeverReader starts a NeverReader on 127.0.0.1 with a free port and
// registers Close with tb.Cleanup. It fails the test if listening fails.
func NewNeverReader(tb testing.TB) *NeverReader {
	tb.Helper()
	lc := net.ListenConfig{Control: stallingListenControl(neverReaderRecvBuffer, neverReaderMSS)}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testnet: NewNeverReader: %v", err)
	}
	r := &NeverReader{ln: ln}
	r.wg.Add(1)
	go r.acceptLoop()
	tb.Cleanup(r.Close)
	return r
}

// Addr returns the "127.0.0.1:port" address to dial.
func (r *NeverReader) Addr() string { return r.ln.Addr().String() }

// Accepted returns how many connections have been accepted.
func (r *NeverReader) Accepted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted
}

// WaitAccepted blocks until at least n connections have been accepted or
// timeout elapses, and reports whether n was reached.
func (r *NeverReader) WaitAccepted(n int, timeout time.Duration) bool {
	return r.waitUntil(timeout, func() bool { return r.Accepted() >= n })
}

// Close closes the listener and all held connections and waits for the
// accept goroutine. It is idempotent.
func (r *NeverReader) Close() {
	r.mu.Lock()
	r.closed = true
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	_ = r.ln.Close()
	r.wg.Wait()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (r *NeverReader) acceptLoop() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || r.isClosed() {
				return
			}
			time.Sleep(acceptRetryInterval) // transient error, e.g. EMFILE
			continue
		}
		r.mu.Lock()
		r.accepted++
		r.notifyLocked()
		if r.closed {
			r.mu.Unlock()
			_ = c.Close()
			return
		}
		r.conns = append(r.conns, c) // held, never read
		r.mu.Unlock()
	}
}

func (r *NeverReader) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Flapper is a TCP server on 127.0.0.1 that accepts each connection and
// closes it immediately (an ordinary close, so the client reads EOF; a
// client that writes afterwards may see a reset). It models a peer that
// keeps hanging up.
//
// All methods are safe for concurrent use. Close (also run by tb.Cleanup)
// closes the listener and waits for the accept goroutine; it is idempotent
// and bounded.
type Flapper struct {
	ln net.Listener
	wg sync.WaitGroup

	signal   // mu guards the fields below
	accepted int
	closed   bool
}

// NewFlapper starts a Flapper on 127.0.0.1 with a free port and registers
// Close with tb.Cleanup. It fails the test if listening fails.
func NewFlapper(tb testing.TB) *Flapper {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testnet: NewFlapper: %v", err)
	}
	f := &Flapper{ln: ln}
	f.wg.Add(1)
	go f.acceptLoop()
	tb.Cleanup(f.Close)
	return f
}

// Addr returns the "127.0.0.1:port" address to dial.
func (f *Flapper) Addr() string { return f.ln.Addr().String() }

// Accepted returns how many connections have been accepted (and closed).
func (f *Flapper) Accepted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

// WaitAccepted blocks until at least n connections have been accepted or
// timeout elapses, and reports whether n was reached.
func (f *Flapper) WaitAccepted(n int, timeout time.Duration) bool {
	return f.waitUntil(timeout, func() bool { return f.Accepted() >= n })
}

// Close closes the listener and waits for the accept goroutine. It is
// idempotent.
func (f *Flapper) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	_ = f.ln.Close()
	f.wg.Wait()
}

func (f *Flapper) acceptLoop() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			f.mu.Lock()
			closed := f.closed
			f.mu.Unlock()
			if errors.Is(err, net.ErrClosed) || closed {
				return
			}
			time.Sleep(acceptRetryInterval) // transient error, e.g. EMFILE
			continue
		}
		_ = c.Close()
		f.mu.Lock()
		f.accepted++
		f.notifyLocked()
		f.mu.Unlock()
	}
}
