//go:build unix

package conn

import (
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// socketPair returns a connected pair of network ("tcp", "unix" or
// "unixpacket") sockets, closed when the test ends.
func socketPair(tb testing.TB, network string) (client, server net.Conn) {
	tb.Helper()
	addr := "127.0.0.1:0"
	if network != "tcp" {
		addr = testnet.FreeUnixPath(tb)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// loopbackPair returns a connected TCP pair on 127.0.0.1.
func loopbackPair(tb testing.TB) (client, server net.Conn) { return socketPair(tb, "tcp") }

// unixPair returns a connected unix stream pair.
func unixPair(tb testing.TB) (client, server net.Conn) { return socketPair(tb, "unix") }

// awaitClose waits until c's kernel has the peer's FIN or reset.
func awaitClose(t *testing.T, c net.Conn) {
	t.Helper()
	if closed, err := testnet.WaitPeerClosed(c, 10*time.Second); !closed || err != nil {
		t.Fatalf("the peer's close did not arrive: %v", err)
	}
}

// madeUpAddr is a TCP connection whose addresses are not TCP's.
type madeUpAddr struct{ *net.TCPConn }

func (madeUpAddr) LocalAddr() net.Addr  { return &net.UnixAddr{Name: "made-up", Net: "unix"} }
func (madeUpAddr) RemoteAddr() net.Addr { return &net.UnixAddr{Name: "made-up", Net: "unix"} }

// probeKinds are the checks this platform has: on Linux ppoll and the
// peek, elsewhere the peek alone.
func probeKinds() map[string]probeKind {
	if runtime.GOOS == "linux" || runtime.GOOS == "android" {
		return map[string]probeKind{"ppoll": probeNative, "peek": probePeek}
	}
	return map[string]probeKind{"peek": probeNative}
}

// What each check finds: the peek cannot see a FIN behind unread data, nor
// tell a unix socket's half-close from its close, nor see a unixpacket
// peer's close (an empty record reads like it); ppoll can. A second check
// finds what the first did: the kernel reports an error once, and the
// peek keeps it.
func TestProberFindings(t *testing.T) {
	type finding struct {
		fin    bool
		failed bool
	}
	alive, fin, failed := finding{}, finding{fin: true}, finding{failed: true}
	cases := []struct {
		name        string
		network     string
		peer        func(t *testing.T, s net.Conn)
		ppoll, peek finding
	}{
		{"alive", "tcp", func(*testing.T, net.Conn) {}, alive, alive},
		{"alive, with unread data", "tcp", func(t *testing.T, s net.Conn) { s.Write([]byte("unread")) }, alive, alive},
		{"TCP FIN", "tcp", func(t *testing.T, s net.Conn) { s.Close() }, fin, fin},
		{"TCP half-close", "tcp", func(t *testing.T, s net.Conn) { s.(*net.TCPConn).CloseWrite() }, fin, fin},
		{"TCP FIN behind unread data", "tcp", func(t *testing.T, s net.Conn) { s.Write([]byte("unread")); s.Close() }, fin, alive},
		{"TCP RST", "tcp", func(t *testing.T, s net.Conn) { s.(*net.TCPConn).SetLinger(0); s.Close() }, failed, failed},
		{"unix half-close", "unix", func(t *testing.T, s net.Conn) { s.(*net.UnixConn).CloseWrite() }, alive, fin},
		{"unix close", "unix", func(t *testing.T, s net.Conn) { s.Close() }, failed, fin},
		{"unixpacket, an empty record", "unixpacket", func(t *testing.T, s net.Conn) { s.Write(nil) }, alive, alive},
		{"unixpacket close", "unixpacket", func(t *testing.T, s net.Conn) { s.Close() }, failed, alive},
	}
	for kindName, kind := range probeKinds() {
		for _, tc := range cases {
			t.Run(kindName+"/"+tc.name, func(t *testing.T) {
				c, s := socketPair(t, tc.network)
				p := newProber(c, kind)
				if p == nil || !p.stream || p.tcp != (tc.network == "tcp") || p.packet != (tc.network == "unixpacket") || p.peek != (kindName == "peek") {
					t.Fatalf("prober %+v for a %s stream", p, tc.network)
				}
				tc.peer(t, s)
				// Wait for the close, where the platform's own means can see
				// it (elsewhere than Linux they are the peek's).
				if tc.ppoll != alive && (runtime.GOOS == "linux" || tc.peek != alive) {
					awaitClose(t, c)
				}
				want := tc.ppoll
				if p.peek {
					want = tc.peek
				}
				for i := range 2 {
					have, err := p.check()
					if (finding{fin: have, failed: err != nil}) != want {
						t.Fatalf("check %d: finding %v, %v; want %+v", i+1, have, err, want)
					}
					if tc.network == "tcp" && err != nil && !errors.Is(err, syscall.ECONNRESET) {
						t.Errorf("check %d: %v, want ECONNRESET", i+1, err)
					}
				}
				if tc.name == "TCP FIN behind unread data" || tc.name == "alive, with unread data" {
					buf := make([]byte, 16)
					if n, _ := c.Read(buf); string(buf[:n]) != "unread" {
						t.Fatalf("the check consumed data: read %q", buf[:n])
					}
				}
			})
		}
		t.Run(kindName+"/TCP under a wrapper that makes up its address", func(t *testing.T) {
			// TCP is the kernel's word: a wrapper's address does not turn
			// the FIN check off.
			c, s := loopbackPair(t)
			p := newProber(madeUpAddr{c.(*net.TCPConn)}, kind)
			if p == nil || !p.tcp {
				t.Fatalf("prober %+v, want one for TCP", p)
			}
			s.Close()
			awaitClose(t, c)
			if fin, err := p.check(); !fin || err != nil {
				t.Fatalf("finding %v, %v; want a FIN", fin, err)
			}
		})
		t.Run(kindName+"/TCP FIN, then a reset for data written after it", func(t *testing.T) {
			// Linux's recv reports the FIN before the reset: the peek must
			// ask SO_ERROR.
			c, s := loopbackPair(t)
			p := newProber(c, kind)
			s.Close()
			awaitClose(t, c)
			if _, err := c.Write([]byte("into a closed socket")); err != nil {
				t.Fatal(err)
			}
			var err error
			for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				_, err = p.check()
			}
			if err == nil {
				t.Fatal("the reset was never found")
			}
			// Linux: a reset after the FIN is EPIPE (tcp_reset in CLOSE_WAIT).
			if runtime.GOOS == "linux" && !errors.Is(err, syscall.EPIPE) {
				t.Errorf("found %v, want the socket's own error, EPIPE", err)
			}
		})
		t.Run(kindName+"/closed by us", func(t *testing.T) {
			c, _ := loopbackPair(t)
			p := newProber(c, kind)
			c.Close()
			if _, err := p.check(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("finding %v, want net.ErrClosed", err)
			}
			if p.tellsQuiet() && p.quiet() {
				t.Error("a closed socket reported quiet")
			}
			if err := p.awaitReset(time.Millisecond, time.Millisecond, 0); !errors.Is(err, net.ErrClosed) {
				t.Errorf("awaitReset on a closed socket: %v, want net.ErrClosed", err)
			}
		})
		t.Run(kindName+"/no socket, or a datagram socket", func(t *testing.T) {
			c, _ := net.Pipe()
			if newProber(c, kind) != nil {
				t.Fatal("a prober for a pipe")
			}
			u, err := net.Dial("udp", "127.0.0.1:9")
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			p := newProber(u, kind)
			if p == nil || p.stream {
				t.Fatalf("prober %+v for a UDP socket, want one that is not a stream", p)
			}
			if p.tellsQuiet() != !p.peek || p.tellsQuiet() && !p.quiet() {
				t.Fatalf("UDP socket: tellsQuiet %v, quiet %v; want ppoll alone to tell, and quiet", p.tellsQuiet(), p.tellsQuiet() && p.quiet())
			}
		})
		t.Run(kindName+"/allocates nothing", func(t *testing.T) {
			c, s := loopbackPair(t)
			go io.Copy(io.Discard, s)
			p := newProber(c, kind)
			if n := testing.AllocsPerRun(100, func() { p.check() }); n != 0 {
				t.Errorf("a check allocates %v times", n)
			}
		})
	}
	if (*prober)(nil).tellsQuiet() {
		t.Error("no prober tells quiet")
	}
}

func TestProberAwaitReset(t *testing.T) {
	for kindName, kind := range probeKinds() {
		t.Run(kindName+"/closed peer", func(t *testing.T) {
			c, s := loopbackPair(t)
			s.Close()
			awaitClose(t, c)
			c.Write([]byte("into a closed socket"))
			start := time.Now()
			if err := newProber(c, kind).awaitReset(time.Second, maxResetWait, 0); err == nil {
				t.Fatal("no reset from a closed peer")
			}
			if took := time.Since(start); took > 900*time.Millisecond {
				t.Errorf("found the reset after %v: not when it came", took)
			}
		})
		t.Run(kindName+"/half-closed peer", func(t *testing.T) {
			c, s := loopbackPair(t)
			s.(*net.TCPConn).CloseWrite()
			awaitClose(t, c)
			c.Write([]byte("taken\n"))
			start := time.Now()
			if err := newProber(c, kind).awaitReset(20*time.Millisecond, maxResetWait, 0); err != nil {
				t.Fatalf("a reset from a half-closed peer: %v", err)
			}
			if took := time.Since(start); took < 20*time.Millisecond {
				t.Errorf("waited %v, less than the floor", took)
			}
			buf := make([]byte, 16)
			if n, _ := s.Read(buf); string(buf[:n]) != "taken\n" {
				t.Errorf("the peer read %q", buf[:n])
			}
		})
		t.Run(kindName+"/the dial stands for the round trip", func(t *testing.T) {
			c, s := loopbackPair(t)
			s.(*net.TCPConn).CloseWrite()
			awaitClose(t, c)
			p := newProber(c, kind)
			if !p.peek {
				t.Skip("ppoll takes the kernel's round trip: TestProberRoundTrip")
			}
			start := time.Now()
			if err := p.awaitReset(time.Millisecond, maxResetWait, 30*time.Millisecond); err != nil {
				t.Fatalf("a reset from a half-closed peer: %v", err)
			}
			if took := time.Since(start); took < 61*time.Millisecond {
				t.Errorf("the peek waited %v, want the floor plus two dials (61 ms)", took)
			}
		})
		t.Run(kindName+"/unix: no wait", func(t *testing.T) {
			c, s := unixPair(t)
			s.(*net.UnixConn).CloseWrite()
			awaitClose(t, c)
			p := newProber(c, kind)
			if !p.peek {
				t.Skip("ppoll never sees a unix half-close as a FIN: it does not wait for a reset there")
			}
			start := time.Now()
			if err := p.awaitReset(time.Second, maxResetWait, time.Second); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 500*time.Millisecond {
				t.Errorf("waited %v on a unix socket, where a Write to a closed peer fails itself", took)
			}
		})
	}
}

// BenchmarkLivenessCheck measures what the check adds to a Write that
// follows an idle pause: one ppoll, or the peek's getsockopt and recv,
// through RawConn.Control.
func BenchmarkLivenessCheck(b *testing.B) {
	for _, kindName := range []string{"ppoll", "peek"} {
		kind, ok := probeKinds()[kindName]
		if !ok {
			continue
		}
		b.Run(kindName, func(b *testing.B) {
			c, s := loopbackPair(b)
			go io.Copy(io.Discard, s)
			p := newProber(c, kind)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.check(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discardServer accepts one TCP connection on 127.0.0.1 and discards what
// it reads.
func discardServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// When the liveness check runs: before the first Write on a connection,
// before a Write that follows a pause of idleAfter or more, and at least
// every recheckAfter on a busy connection; not before every Write.
func TestWhenTheLivenessCheckRuns(t *testing.T) {
	for kindName, kind := range probeKinds() {
		t.Run(kindName, func(t *testing.T) { testWhenTheLivenessCheckRuns(t, kind) })
	}
}

func testWhenTheLivenessCheckRuns(t *testing.T, kind probeKind) {
	m := New("tcp", discardServer(t), WithWriteTimeout(0), optionFunc(func(c *config) { c.probe = kind }))
	defer m.Close()
	line := []byte("line\n")
	if _, err := m.Write(line); err != nil {
		t.Fatal(err)
	}
	l := m.cur.Load()
	if n := l.checks.Load(); n != 1 {
		t.Fatalf("%d checks after the first Write, want 1", n)
	}

	// Busy: Writes back to back for 50 ms. A busy machine may stall this
	// goroutine between two Writes: each such gap may bring a check of its
	// own, and is counted.
	before, start := l.checks.Load(), time.Now()
	writes, gaps := 0, 0
	for prev := start; time.Since(start) < 50*time.Millisecond; writes++ {
		if now := time.Now(); now.Sub(prev) >= idleAfter/2 {
			gaps++
		}
		prev = time.Now()
		if _, err := m.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	checks := l.checks.Load() - before
	if most := int64(elapsed/recheckAfter) + 2 + int64(gaps); checks > most {
		t.Errorf("%d checks in %d back-to-back Writes over %v (%d gaps), want at most %d: one per %v", checks, writes, elapsed, gaps, most, recheckAfter)
	}
	if checks == 0 {
		t.Errorf("no check in %d back-to-back Writes over %v, want one per %v", writes, elapsed, recheckAfter)
	}

	// After a pause of 2 ms: checked, although the last check is recent.
	for range 20 {
		time.Sleep(2 * idleAfter)
		before, start := l.checks.Load(), time.Now()
		if _, err := m.Write(line); err != nil {
			t.Fatal(err)
		}
		if l.checks.Load() == before {
			t.Fatal("a Write after a pause of 2 ms was not checked")
		}
		// At once again: not checked, unless the machine stalled this
		// goroutine for a pause's length between the two Writes.
		if _, err := m.Write(line); err != nil {
			t.Fatal(err)
		}
		if l.checks.Load() != before+1 && time.Since(start) < idleAfter/2 {
			t.Fatal("a Write right after another was checked")
		}
	}
}

// How long a Write waits for a reset after a suspect FIN: the floor plus
// two round trips, capped.
// errnoOf: the system's error number of an error, EIO for one that has none.
func TestErrnoOf(t *testing.T) {
	for err, want := range map[error]syscall.Errno{
		syscall.ECONNRESET:  syscall.ECONNRESET,
		syscall.Errno(0):    syscall.EIO,
		errors.New("other"): syscall.EIO,
	} {
		if have := errnoOf(err); have != want {
			t.Errorf("errnoOf(%v) = %v, want %v", err, have, want)
		}
	}
}

func TestResetWait(t *testing.T) {
	cases := []struct {
		floor time.Duration
		rtt   time.Duration
		want  time.Duration
	}{
		{5 * time.Millisecond, 0, 5 * time.Millisecond},
		{5 * time.Millisecond, 50 * time.Microsecond, 5*time.Millisecond + 100*time.Microsecond},
		{5 * time.Millisecond, 300 * time.Millisecond, 605 * time.Millisecond},
		{5 * time.Millisecond, 4 * time.Second, maxResetWait},
	}
	for _, tc := range cases {
		if have := resetWait(tc.floor, maxResetWait, tc.rtt); have != tc.want {
			t.Errorf("resetWait(%v, %v) = %v, want %v", tc.floor, tc.rtt, have, tc.want)
		}
	}
	if have := resetWait(5*time.Millisecond, 2*time.Millisecond, 50*time.Microsecond); have != 2*time.Millisecond {
		t.Errorf("resetWait with a ceiling of 2ms = %v", have)
	}
	if resetWaitFloor != 5*time.Millisecond || maxResetWait != time.Second {
		t.Errorf("floor %v, cap %v; RELIABILITY.md documents 5 ms and 1 s", resetWaitFloor, maxResetWait)
	}
}
