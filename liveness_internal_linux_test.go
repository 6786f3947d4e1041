//go:build linux

package conn

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// socketPair returns a connected pair of network ("tcp" or "unix")
// sockets, closed when the test ends.
func socketPair(tb testing.TB, network string) (client, server net.Conn) {
	tb.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
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

func TestProberFindings(t *testing.T) {
	t.Run("alive, with unread data", func(t *testing.T) {
		c, s := loopbackPair(t)
		s.Write([]byte("unread"))
		if fin, err := newProber(c).check(); fin || err != nil {
			t.Fatalf("live connection reported closed: %v, %v", fin, err)
		}
	})
	t.Run("TCP FIN behind unread data", func(t *testing.T) {
		c, s := loopbackPair(t)
		s.Write([]byte("unread"))
		s.Close()
		awaitClose(t, c)
		if fin, err := newProber(c).check(); !fin || err != nil {
			t.Fatalf("finding %v, %v; want a FIN", fin, err)
		}
		buf := make([]byte, 16)
		if n, _ := c.Read(buf); string(buf[:n]) != "unread" {
			t.Fatalf("the check consumed data: read %q", buf[:n])
		}
	})
	t.Run("TCP RST", func(t *testing.T) {
		c, s := loopbackPair(t)
		s.(*net.TCPConn).SetLinger(0)
		s.Close()
		awaitClose(t, c)
		if fin, err := newProber(c).check(); err == nil || fin {
			t.Fatalf("finding %v, %v; want a reset", fin, err)
		}
	})
	t.Run("unix half-close", func(t *testing.T) {
		c, s := unixPair(t)
		s.(*net.UnixConn).CloseWrite()
		awaitClose(t, c)
		if fin, err := newProber(c).check(); fin || err != nil {
			t.Fatalf("finding %v, %v; want alive: the peer's socket is open", fin, err)
		}
	})
	t.Run("unix close", func(t *testing.T) {
		c, s := unixPair(t)
		s.Close()
		awaitClose(t, c)
		if _, err := newProber(c).check(); err == nil {
			t.Fatal("a closed unix peer reported alive")
		}
	})
	t.Run("closed by us", func(t *testing.T) {
		c, _ := loopbackPair(t)
		p := newProber(c)
		c.Close()
		if _, err := p.check(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("finding %v, want net.ErrClosed", err)
		}
		if p.quiet() {
			t.Error("a closed socket reported quiet")
		}
	})
	t.Run("no socket, or a datagram socket", func(t *testing.T) {
		c, _ := net.Pipe()
		if newProber(c) != nil {
			t.Fatal("a prober for a pipe")
		}
		u, err := net.Dial("udp", "127.0.0.1:9")
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if p := newProber(u); p == nil || p.stream || !p.quiet() {
			t.Fatalf("prober %+v for a UDP socket, want one that is not a stream and is quiet", p)
		}
	})
}

// fill writes to c until a write blocks for 50 ms: its peer does not read.
func fill(t *testing.T, c net.Conn) {
	t.Helper()
	chunk := make([]byte, 64<<10)
	for range 10_000 {
		c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Write(chunk); err != nil {
			c.SetWriteDeadline(time.Time{})
			return
		}
	}
	t.Fatal("the peer never stopped taking data")
}

func TestProberQuiet(t *testing.T) {
	pairs := map[string]func(testing.TB) (net.Conn, net.Conn){"tcp": loopbackPair, "unix": unixPair}
	for name, pair := range pairs {
		t.Run(name, func(t *testing.T) {
			c, s := pair(t)
			p := newProber(c)
			if !p.quiet() {
				t.Fatal("a fresh connection is not quiet")
			}
			c.Write([]byte("taken"))
			buf := make([]byte, 16)
			io.ReadFull(s, buf[:5])
			if name == "tcp" { // the acknowledgement may trail the read
				for deadline := time.Now().Add(10 * time.Second); !p.quiet() && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
			}
			if !p.quiet() {
				t.Fatal("not quiet once the peer took everything")
			}
			fill(t, c)
			if p.quiet() {
				t.Fatal("quiet while the send buffer is full")
			}
		})
	}
}

func TestProberAwaitReset(t *testing.T) {
	t.Run("closed peer", func(t *testing.T) {
		c, s := loopbackPair(t)
		s.Close()
		awaitClose(t, c)
		c.Write([]byte("into a closed socket"))
		if err := newProber(c).awaitReset(time.Second, maxResetWait); err == nil {
			t.Fatal("no reset from a closed peer")
		}
	})
	t.Run("half-closed peer", func(t *testing.T) {
		c, s := loopbackPair(t)
		s.(*net.TCPConn).CloseWrite()
		awaitClose(t, c)
		c.Write([]byte("taken\n"))
		start := time.Now()
		if err := newProber(c).awaitReset(20*time.Millisecond, maxResetWait); err != nil {
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
}

// BenchmarkLivenessCheck measures what the check adds to a Write that
// follows an idle pause: one ppoll through RawConn.Control.
func BenchmarkLivenessCheck(b *testing.B) {
	c, s := loopbackPair(b)
	go io.Copy(io.Discard, s)
	p := newProber(c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.check(); err != nil {
			b.Fatal(err)
		}
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
	m := New("tcp", discardServer(t), WithWriteTimeout(0))
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
func TestResetWait(t *testing.T) {
	cases := []struct {
		floor time.Duration
		rtt   uint32 // µs
		want  time.Duration
	}{
		{5 * time.Millisecond, 0, 5 * time.Millisecond},
		{5 * time.Millisecond, 50, 5*time.Millisecond + 100*time.Microsecond},
		{5 * time.Millisecond, 300_000, 605 * time.Millisecond},
		{5 * time.Millisecond, 4_000_000, maxResetWait},
	}
	for _, tc := range cases {
		if have := resetWait(tc.floor, maxResetWait, tc.rtt); have != tc.want {
			t.Errorf("resetWait(%v, %d µs) = %v, want %v", tc.floor, tc.rtt, have, tc.want)
		}
	}
	if have := resetWait(5*time.Millisecond, 2*time.Millisecond, 50); have != 2*time.Millisecond {
		t.Errorf("resetWait with a ceiling of 2ms = %v", have)
	}
	if resetWaitFloor != 5*time.Millisecond || maxResetWait != time.Second {
		t.Errorf("floor %v, cap %v; RELIABILITY.md documents 5 ms and 1 s", resetWaitFloor, maxResetWait)
	}
}
