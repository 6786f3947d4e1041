package conn_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed44b27a20/conn"
)

// fakeNet is an in-memory network with counters and failure hooks: each
// dial returns a new fakeConn, or fails as told.
type fakeNet struct {
	mu      sync.Mutex
	dials   int
	conns   []*fakeConn
	dialErr error           // when set, dials fail with it
	hang    bool            // when set, dials block until their context ends
	delay   time.Duration   // each dial takes this long
	prepare func(*fakeConn) // when set, called on each new connection
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
	if f.prepare != nil {
		f.prepare(c)
	}
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

	// Set before the connection is used (fakeNet.prepare).
	maxWrite int           // a larger write fails with EMSGSIZE, as a datagram would
	gate     chan struct{} // when set, writes wait until it is closed
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
	if c.gate != nil {
		<-c.gate
	}
	if c.maxWrite > 0 && len(b) > c.maxWrite {
		return 0, &net.OpError{Op: "write", Net: "udp", Err: conn.ErrMsgSize}
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

// stallNet dials stallConns.
type stallNet struct {
	mu    sync.Mutex
	conns []*stallConn
}

func (s *stallNet) Dial(string, string) (net.Conn, error) {
	c := newStallConn()
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	return c, nil
}

func (s *stallNet) Conn(i int) *stallConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[i]
}

// stallConn behaves like a socket's write side, in a form a synctest bubble
// can run (net.Pipe cannot: its writers queue on a sync.Mutex, which does
// not count as durably blocked, so fake time would stop). Writes are
// served one at a time in arrival order; while the peer reads (flowing) a
// Write completes at once, otherwise it blocks until its deadline passes or
// the connection is closed. As on a socket, a Write fails at once when the
// deadline has passed, and a blocked Write follows a deadline moved while
// it waits.
type stallConn struct {
	turn chan struct{} // the write lock: holding its one slot
	done chan struct{} // closed by Close

	mu        sync.Mutex
	deadline  time.Time
	changed   chan struct{} // closed when the deadline or flowing changes
	flowing   bool
	closed    bool
	written   int
	deadlines int
}

func newStallConn() *stallConn {
	return &stallConn{turn: make(chan struct{}, 1), done: make(chan struct{}), changed: make(chan struct{})}
}

func (c *stallConn) Write(b []byte) (int, error) {
	select {
	case c.turn <- struct{}{}:
	case <-c.done:
		return 0, net.ErrClosed
	}
	defer func() { <-c.turn }()
	for {
		c.mu.Lock()
		deadline, changed, flowing, closed := c.deadline, c.changed, c.flowing, c.closed
		c.mu.Unlock()
		if closed {
			return 0, net.ErrClosed
		}
		var timeout <-chan time.Time
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timeout = time.After(left)
		}
		if flowing {
			c.mu.Lock()
			c.written += len(b)
			c.mu.Unlock()
			return len(b), nil
		}
		select {
		case <-timeout:
		case <-changed:
		case <-c.done:
		}
	}
}

// flow makes the peer read (true) or stop reading (false).
func (c *stallConn) flow(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flowing = on
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	c.deadlines++
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

func (c *stallConn) Deadlines() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadlines
}

func (c *stallConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}

func (c *stallConn) Read([]byte) (int, error)        { return 0, errors.New("not readable") }
func (c *stallConn) LocalAddr() net.Addr             { return fakeRemote }
func (c *stallConn) RemoteAddr() net.Addr            { return fakeRemote }
func (c *stallConn) SetDeadline(time.Time) error     { return nil }
func (c *stallConn) SetReadDeadline(time.Time) error { return nil }

// hosts is an in-memory network of several endpoints, each a fakeNet, that
// records when each was dialed.
type hosts struct {
	mu    sync.Mutex
	nets  map[string]*fakeNet
	dials []dialed
}

type dialed struct {
	address string
	at      time.Time
}

func newHosts(addrs ...string) *hosts {
	h := &hosts{nets: map[string]*fakeNet{}}
	for _, a := range addrs {
		h.nets[a] = &fakeNet{}
	}
	return h
}

func (h *hosts) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	h.mu.Lock()
	f := h.nets[address]
	h.dials = append(h.dials, dialed{address, time.Now()})
	h.mu.Unlock()
	if f == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("no such fake host " + address)}
	}
	return f.Dial(ctx, network, address)
}

func (h *hosts) at(address string) *fakeNet { return h.nets[address] }

// dialsOf returns when address was dialed.
func (h *hosts) dialsOf(address string) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ts []time.Time
	for _, d := range h.dials {
		if d.address == address {
			ts = append(ts, d.at)
		}
	}
	return ts
}

var errRefused = errors.New("connection refused (fake)")
