package conn

// A switch closes a socket of the net package at its fence (fence.go): a
// Write that reaches the switched-out link later writes nothing on it and
// moves to the current link; a datagram socket is closed at once.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// holdingSink is a TCP server that reads each connection to its end and
// keeps it open after the client's FIN, so that a switched-out link stays
// in its linger, shut down for writing but not closed.
type holdingSink struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	data []*bytes.Buffer
	// firstEnd is closed at the FIN of the first connection.
	firstEnd chan struct{}
	conns    []net.Conn
}

func newHoldingSink(t *testing.T, config *tls.Config) *holdingSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if config != nil {
		ln = tls.NewListener(ln, config)
	}
	s := &holdingSink{ln: ln, firstEnd: make(chan struct{})}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := &bytes.Buffer{}
			s.mu.Lock()
			first := len(s.conns) == 0
			s.data, s.conns = append(s.data, buf), append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				var b [4096]byte
				for {
					n, err := c.Read(b[:])
					s.mu.Lock()
					buf.Write(b[:n])
					s.mu.Unlock()
					if err != nil {
						if first {
							close(s.firstEnd)
						}
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *holdingSink) received(i int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.data) {
		return ""
	}
	return s.data[i].String()
}

// awaitRotation waits until a rotation has switched l out and closed it
// for writing (its peer saw the FIN), and checks that it lingers.
func awaitRotation(t *testing.T, m *Manager, s *holdingSink, l *link) {
	t.Helper()
	select {
	case <-s.firstEnd:
	case <-time.After(10 * time.Second):
		t.Fatal("the first connection was not shut down for writing by a rotation")
	}
	if !l.switched.Load() || l.retired.Load() || m.cur.Load() == l {
		t.Fatalf("old link: switched %v, retired %v, current %v: want switched out, lingering", l.switched.Load(), l.retired.Load(), m.cur.Load() == l)
	}
}

func TestALateWriteOnAFencedLinkMovesToTheCurrentOne(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		if !canShutdown {
			t.Skip("no socket descriptors to shut down here")
		}
		lateWriteOnAFencedLink(t, nil, fenceShutdown)
	})
	t.Run("tls", func(t *testing.T) {
		serverTLS, clientTLS := testnet.SelfSignedTLS(t)
		d := &tls.Dialer{Config: clientTLS}
		lateWriteOnAFencedLink(t, serverTLS, fenceCloseWrite, WithDialer(d.DialContext))
	})
}

// lateWriteOnAFencedLink checks, on a sink with config (nil: plain TCP),
// that a switch closes the old link at its fence, of kind want, that the
// link then lingers, and that Writes reaching it later move on having
// written nothing.
func lateWriteOnAFencedLink(t *testing.T, config *tls.Config, want fence, opts ...Option) {
	s := newHoldingSink(t, config)
	m := New("tcp", s.ln.Addr().String(), append(opts, WithMaxConnectionAge(time.Second), WithMaxLinger(time.Minute))...)
	defer m.Close()
	if m.Take() == nil {
		t.Fatal("no connection")
	}
	l := m.cur.Load()
	if l.fence != want || l.counted || l.inflight != nil {
		t.Fatalf("a link of a Manager that rotates: fence %d, counted %v, %d stripes: want fence %d and no count", l.fence, l.counted, len(l.inflight), want)
	}
	if _, err := m.Write([]byte("before\n")); err != nil {
		t.Fatal(err)
	}
	awaitRotation(t, m, s, l)

	// A Write that took l before the switch and reaches it after the fence.
	if n, err := m.writeOn(l, []byte("late\n"), true); n != 5 || err != nil {
		t.Fatalf("writeOn the fenced link = %d, %v: want it written on the current one", n, err)
	}
	if n, err := m.writeLink(l, []byte("session\n")); n != 0 || err != errLinkLeft {
		t.Fatalf("writeLink on the fenced link = %d, %v: want 0, errLinkLeft", n, err)
	}
	if n, err := m.write(l, []byte("direct\n"), true); n != 0 || err != errLinkLeft {
		t.Fatalf("write on the fenced link = %d, %v: want 0, errLinkLeft (nothing written, not lost)", n, err)
	}
	if l.retired.Load() {
		t.Fatalf("the failed Writes retired the switched-out link (cause %v): the switch does, after its linger", l.cause)
	}
	if n, err := m.writeNow([]byte("batch\n")); n != 6 || err != nil {
		t.Fatalf("writeNow = %d, %v", n, err)
	}
	if got := s.received(0); got != "before\n" {
		t.Errorf("the old connection carried %q, want only what came before its switch", got)
	}
	for deadline := time.Now().Add(10 * time.Second); s.received(1) != "late\nbatch\n"; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the new connection carried %q, want the late Write and the batch", s.received(1))
		}
	}
	if st := m.Stats(); st.Lost != 0 || st.Switches < 1 {
		t.Errorf("Stats() = %+v: want the switch, no loss", st)
	}
}

func TestAWriteTimingOutOnAFencedLinkReportsItsTimeout(t *testing.T) {
	m := New("tcp", "127.0.0.1:1", WithMaxConnectionAge(time.Hour))
	defer m.Close()
	l := &link{conn: timeoutConn{}, dead: make(chan struct{}), next: make(chan struct{})}
	l.switched.Store(true)
	if n, err := m.write(l, []byte("x"), true); n != 0 || !isTimeout(err) {
		t.Fatalf("write = %d, %v: a timeout on a switched-out link is the Write's own: want it, not a move", n, err)
	}
	if !l.retired.Load() {
		t.Error("a link whose Write timed out is lost, switched out or not")
	}
}

func TestADatagramLinkIsClosedAtItsSwitch(t *testing.T) {
	a, b := testnet.NewUDPSink(t), testnet.NewUDPSink(t)
	var (
		mu   sync.Mutex
		list = []string{a.Addr()}
	)
	discover := func(context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		return list, nil
	}
	m := New("udp", "", WithDiscovery(discover), WithMaxConnectionAge(100*time.Millisecond))
	defer m.Close()
	if m.Take() == nil {
		t.Fatal("no connection")
	}
	l := m.cur.Load()
	if l.fence != fenceClose || l.counted {
		t.Fatalf("a UDP link of a Manager that can move: fence %d, counted %v: want fenceClose", l.fence, l.counted)
	}
	mu.Lock()
	list = []string{b.Addr()}
	mu.Unlock()
	select {
	case <-l.dead:
	case <-time.After(5 * time.Second): // a linger would take maxLinger, 10 s
		t.Fatal("the old UDP link was not closed at its switch")
	}
	if !errors.Is(l.cause, errSwitched) || !l.switched.Load() {
		t.Fatalf("old link: cause %v, switched %v: want closed by its switch", l.cause, l.switched.Load())
	}
	// A Write that took l before the switch: the closed socket writes
	// nothing, and the datagram goes to B.
	if n, err := m.write(l, []byte("late"), true); n != 0 || err != errLinkLeft {
		t.Fatalf("write on the closed datagram link = %d, %v: want 0, errLinkLeft", n, err)
	}
	if n, err := m.writeOn(l, []byte("late"), true); n != 4 || err != nil {
		t.Fatalf("writeOn = %d, %v", n, err)
	}
	if !b.WaitCount(1, 10*time.Second) {
		t.Fatal("the late datagram did not reach B")
	}
}

// timeoutConn is a connection whose every Write times out having written
// nothing.
type timeoutConn struct{ net.Conn }

func (timeoutConn) Write([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }
func (timeoutConn) Close() error              { return nil }
