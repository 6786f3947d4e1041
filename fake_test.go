package conn_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// fakeNet is an in-memory network with counters and failure hooks: each
// dial returns a new fakeConn, or fails as told.
type fakeNet struct {
	mu      sync.Mutex
	dials   int
	conns   []*fakeConn
	dialErr error         // when set, dials fail with it
	hang    bool          // when set, dials block until their context ends
	delay   time.Duration // each dial takes this long
}

func (f *fakeNet) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	f.mu.Lock()
	f.dials++
	err, hang, delay := f.dialErr, f.hang, f.delay
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	c := &fakeConn{local: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000 + len(f.conns)}}
	f.conns = append(f.conns, c)
	f.mu.Unlock()
	return c, nil
}

func (f *fakeNet) set(fn func(f *fakeNet)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeNet) Dials() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dials
}

// Conn returns the i-th connection dialed.
func (f *fakeNet) Conn(i int) *fakeConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns[i]
}

// fakeConn counts what is written to it; failing makes its Writes fail.
type fakeConn struct {
	local     net.Addr
	written   atomic.Int64
	writes    atomic.Int64
	closed    atomic.Bool
	deadlines atomic.Int64
	failing   atomic.Pointer[error]

	mu        sync.Mutex
	bytes     []byte // what was written
	limit     int    // with failLimit: fail once this many bytes were written
	failLimit error
}

var fakeRemote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}

var errBroken = errors.New("broken pipe (fake)")

func (c *fakeConn) Write(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if p := c.failing.Load(); p != nil {
		return 0, *p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failLimit != nil && len(c.bytes)+len(b) > c.limit {
		n := c.limit - len(c.bytes)
		c.bytes = append(c.bytes, b[:n]...)
		c.written.Add(int64(n))
		c.fail(c.failLimit)
		return n, c.failLimit
	}
	c.bytes = append(c.bytes, b...)
	c.writes.Add(1)
	c.written.Add(int64(len(b)))
	return len(b), nil
}

// failAfter makes the connection accept n more bytes in all, then fail.
func (c *fakeConn) failAfter(n int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limit, c.failLimit = len(c.bytes)+n, err
}

func (c *fakeConn) data() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.bytes)
}

func (c *fakeConn) fail(err error) { c.failing.Store(&err) }

func (c *fakeConn) Read([]byte) (int, error)        { return 0, errors.New("not readable") }
func (c *fakeConn) Close() error                    { c.closed.Store(true); return nil }
func (c *fakeConn) LocalAddr() net.Addr             { return c.local }
func (c *fakeConn) RemoteAddr() net.Addr            { return fakeRemote }
func (c *fakeConn) SetDeadline(time.Time) error     { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error {
	c.deadlines.Add(1)
	return nil
}

// afterRecorder is an AfterFunc that records the waits asked of it and
// fires them through time.After, so that in a synctest bubble they pass in
// fake time.
type afterRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (a *afterRecorder) After(d time.Duration) <-chan time.Time {
	a.mu.Lock()
	a.waits = append(a.waits, d)
	a.mu.Unlock()
	return time.After(d)
}

func (a *afterRecorder) Waits() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Duration(nil), a.waits...)
}
