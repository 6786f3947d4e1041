package conn_test

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// A regression test from an adversarial review. What it caught:
// The same as TestPutOfATakenConnsErrorAfterARotationKeepsTheNewConnection,
// on loopback TLS: after a rotation closed the Taken *tls.Conn, its Write
// returns a bare net.ErrClosed, and Put of it retires the new connection.
func TestTLSPutAfterRotationKeepsTheNewConnection(t *testing.T) {
	serverTLS, clientTLS := testnet.SelfSignedTLS(t)
	sink := testnet.NewSink(t, "tcp", testnet.WithTLS(serverTLS))
	defer sink.Close()
	d := &tls.Dialer{Config: clientTLS}
	const age = 300 * time.Millisecond
	m := conn.New("tcp", sink.Addr(), conn.WithDialer(d.DialContext), conn.WithMaxConnectionAge(age))
	defer m.Close()
	c := m.Take()
	if c == nil {
		t.Fatal("no connection")
	}
	if _, err := c.Write([]byte("a\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats().Switches == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // the drain closed the old one: no Manager Write was under way
	_, err := c.Write([]byte("b\n"))
	t.Logf("write on the switched-out tls.Conn: %#v", err)
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write: %v", err)
	}
	cur := m.Take()
	m.Put(err)
	time.Sleep(50 * time.Millisecond)
	if m.Take() != cur {
		t.Errorf("Put of the switched-out connection's error replaced the current connection")
	}
	if st := m.Stats(); st.Lost != 0 {
		t.Errorf("Put of the switched-out connection's error: Stats %+v; want it ignored (RELIABILITY.md)", st)
	}
}

// A regression test from an adversarial review. What it caught:
// The same on a unix stream socket without TLS: the old and the new
// connection have the same addresses (an unnamed local end, the same
// path), so the OpError of the switched-out connection "names" the new one
// and Put retires it.
func TestUnixPutAfterRotationKeepsTheNewConnection(t *testing.T) {
	sink := testnet.NewSink(t, "unix")
	defer sink.Close()
	const age = 300 * time.Millisecond
	m := conn.New("unix", sink.Addr(), conn.WithMaxConnectionAge(age))
	defer m.Close()
	c := m.Take()
	if c == nil {
		t.Fatal("no connection")
	}
	if _, err := c.Write([]byte("a\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats().Switches == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	_, err := c.Write([]byte("b\n"))
	t.Logf("write on the switched-out unix conn: %v", err)
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write: %v", err)
	}
	cur := m.Take()
	m.Put(err)
	time.Sleep(50 * time.Millisecond)
	if m.Take() != cur {
		t.Errorf("Put of the switched-out connection's error replaced the current connection; Stats %+v", m.Stats())
	}
}

// A regression test from an adversarial review. What it caught:
// "A switch loses nothing" rests on close(2) sending a FIN after what the
// send buffer holds. If anything the peer sent sits unread in the receive
// buffer (a banner, a TLS 1.3 session ticket sent after the client's
// Finished as OpenSSL servers do, an error message), Linux aborts the
// connection instead: a reset, and the send buffer is discarded. The
// Manager never reads, so a peer that said one byte turns every rotation
// into a loss of Writes that returned nil.
func TestScenarioRotationLosesNothingWhenThePeerSaidSomething(t *testing.T) {
	scenario(t)
	const (
		rotations = 100
		maxAge    = 20 * time.Millisecond
		writers   = 4
	)
	s := &tallySink{seen: make([][]uint8, writers)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open++
			s.mu.Unlock()
			if os.Getenv("NOBANNER") == "" {
				c.Write([]byte("hello\n")) // a banner, a ticket: anything
			}
			s.wg.Go(func() { s.serve(slowReader{c}) })
		}
	})
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })

	m := conn.New("tcp", ln.Addr().String(), conn.WithMaxConnectionAge(maxAge))
	defer m.Close()
	done := make(chan struct{})
	results := numbered(0, writers, 0, m.Write, done)
	start := time.Now()
	for m.Stats().Switches < rotations {
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("only %d rotations", m.Stats().Switches)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(done)
	rs := results()
	if _, err := m.Write([]byte("end\n")); err != nil {
		t.Fatalf("final Write: %v", err)
	}
	acked, lost := s.check(t, rs)
	t.Logf("%d lines acked through %d rotations: %d lost; Stats %+v", acked, m.Stats().Switches, lost, m.Stats())
	if lost > 0 {
		t.Errorf("%d of %d acked lines lost across graceful rotations", lost, acked)
	}
}

// slowReader reads at most 4 KiB per millisecond: a sink a little behind, so
// that the client's send buffer holds data when a rotation closes it.
type slowReader struct{ net.Conn }

func (c slowReader) Read(b []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return c.Conn.Read(b[:min(len(b), 4<<10)])
}
