package testnet

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// UDPSink is a UDP socket on 127.0.0.1 that records every datagram it
// receives. Stop closes the socket, so a client connected to it gets ICMP
// port-unreachable, which Linux reports as ECONNREFUSED on the client's
// next write or read; Start binds the same port again. Recorded datagrams
// and the count are cumulative across restarts.
//
// All methods are safe for concurrent use. Close (also run by tb.Cleanup)
// closes the socket and waits for the reading goroutine; it is idempotent
// and bounded.
type UDPSink struct {
	addr string

	life   sync.Mutex // serialises Start, Stop and Close
	closed bool       // guarded by life
	wg     sync.WaitGroup

	signal                 // mu guards the fields below
	conn      *net.UDPConn // nil while stopped
	datagrams []string
}

// NewUDPSink starts a UDPSink on 127.0.0.1 with a free port outside the
// ephemeral range (so that nobody is handed it while the sink is stopped)
// and registers Close with tb.Cleanup. It fails the test if binding fails.
func NewUDPSink(tb testing.TB) *UDPSink {
	tb.Helper()
	conn, err := listenStableUDP()
	if err != nil {
		tb.Fatalf("testnet: NewUDPSink: %v", err)
	}
	u := &UDPSink{addr: conn.LocalAddr().String()}
	u.startReading(conn)
	tb.Cleanup(u.Close)
	return u
}

// Addr returns the "127.0.0.1:port" address; it is the same after Start.
func (u *UDPSink) Addr() string { return u.addr }

// Datagrams returns a copy of every datagram payload received so far, in
// arrival order.
func (u *UDPSink) Datagrams() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.datagrams...)
}

// Count returns how many datagrams have been received.
func (u *UDPSink) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.datagrams)
}

// WaitCount blocks until at least n datagrams have been received or
// timeout elapses, and reports whether n was reached.
func (u *UDPSink) WaitCount(n int, timeout time.Duration) bool {
	return u.waitUntil(timeout, func() bool { return u.Count() >= n })
}

// Stop closes the socket and waits for the reading goroutine. Datagrams
// sent while stopped are lost (and provoke ICMP port-unreachable). Stop on
// a stopped or closed UDPSink does nothing.
func (u *UDPSink) Stop() {
	u.life.Lock()
	defer u.life.Unlock()
	u.stopLocked()
}

// Start binds the same address again after Stop, retrying for up to 2 s
// while the port is taken. Start on a running UDPSink does nothing and
// returns nil; after Close it returns net.ErrClosed.
func (u *UDPSink) Start() error {
	u.life.Lock()
	defer u.life.Unlock()
	if u.closed {
		return net.ErrClosed
	}
	u.mu.Lock()
	running := u.conn != nil
	u.mu.Unlock()
	if running {
		return nil
	}
	laddr, err := net.ResolveUDPAddr("udp", u.addr)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(rebindTimeout)
	for {
		conn, err := net.ListenUDP("udp", laddr)
		if err == nil {
			u.startReading(conn)
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(rebindRetryInterval)
	}
}

// Close closes the socket for good and waits for the reading goroutine.
// Recorded datagrams stay readable. Close is idempotent; later Start calls
// return net.ErrClosed.
func (u *UDPSink) Close() {
	u.life.Lock()
	defer u.life.Unlock()
	u.closed = true
	u.stopLocked()
}

// stopLocked implements Stop; u.life must be held.
func (u *UDPSink) stopLocked() {
	u.mu.Lock()
	conn := u.conn
	u.conn = nil
	u.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
	u.wg.Wait()
}

// startReading installs conn and starts its reader; u.life must be held
// (or u not yet shared).
func (u *UDPSink) startReading(conn *net.UDPConn) {
	u.mu.Lock()
	u.conn = conn
	u.mu.Unlock()
	u.wg.Add(1)
	go u.readLoop(conn)
}

func (u *UDPSink) readLoop(conn *net.UDPConn) {
	defer u.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			u.mu.Lock()
			current := u.conn == conn
			u.mu.Unlock()
			if errors.Is(err, net.ErrClosed) || !current {
				return
			}
			continue // transient receive error; the socket is still open
		}
		u.mu.Lock()
		u.datagrams = append(u.datagrams, string(buf[:n]))
		u.notifyLocked()
		u.mu.Unlock()
	}
}
