//go:build linux

package conn

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// loopbackPair returns a connected TCP pair on 127.0.0.1.
func loopbackPair(tb testing.TB) (client, server net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
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

func TestProberFindings(t *testing.T) {
	t.Run("alive, with unread data", func(t *testing.T) {
		c, s := loopbackPair(t)
		s.Write([]byte("unread"))
		if err := waitFinding(newProber(c)); err != nil {
			t.Fatalf("live connection reported dead: %v", err)
		}
	})
	t.Run("FIN behind unread data", func(t *testing.T) {
		c, s := loopbackPair(t)
		s.Write([]byte("unread"))
		s.Close()
		if err := waitFinding(newProber(c)); !errors.Is(err, errPeerClosed) {
			t.Fatalf("finding %v, want errPeerClosed", err)
		}
		buf := make([]byte, 16)
		if n, _ := c.Read(buf); string(buf[:n]) != "unread" {
			t.Fatalf("the check consumed data: read %q", buf[:n])
		}
	})
	t.Run("RST", func(t *testing.T) {
		c, s := loopbackPair(t)
		s.(*net.TCPConn).SetLinger(0)
		s.Close()
		if err := waitFinding(newProber(c)); err == nil || errors.Is(err, errPeerClosed) {
			t.Fatalf("finding %v, want a reset", err)
		}
	})
	t.Run("closed by us", func(t *testing.T) {
		c, _ := loopbackPair(t)
		p := newProber(c)
		c.Close()
		if err := p.peerGone(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("finding %v, want net.ErrClosed", err)
		}
	})
	t.Run("no stream socket", func(t *testing.T) {
		c, _ := net.Pipe()
		u, err := net.Dial("udp", "127.0.0.1:9")
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if newProber(c) != nil || newProber(u) != nil {
			t.Fatal("a prober for a pipe or a datagram socket")
		}
	})
}

// waitFinding returns the prober's finding once the peer's FIN or RST has
// had time to arrive: the finding is stable after that, so it polls.
func waitFinding(p *prober) error {
	var err error
	for range 50 {
		if err = p.peerGone(); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
	}
	return err
}

// BenchmarkLivenessCheck measures what the check adds to a Write that
// follows an idle pause: one ppoll through RawConn.Control.
func BenchmarkLivenessCheck(b *testing.B) {
	c, s := loopbackPair(b)
	go io.Copy(io.Discard, s)
	p := newProber(c)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.peerGone(); err != nil {
			b.Fatal(err)
		}
	}
}
