package conn_test

// A rotation on a real socket (TCP, unix, TLS) lets the Write under way
// finish whole on the old connection, however long the peer makes it
// wait, and only then closes that connection for writing (fence.go).

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

func TestRotationLetsAWriteBlockedOnTheSocketFinishWhole(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		rotateUnderABlockedWrite(t, ln, conn.WithWriteTimeout(0))
	})
	t.Run("unix", func(t *testing.T) {
		if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
			t.Skip("no unix stream sockets to rely on here")
		}
		ln, err := net.Listen("unix", testnet.FreeUnixPath(t))
		if err != nil {
			t.Fatal(err)
		}
		rotateUnderABlockedWrite(t, ln, conn.WithWriteTimeout(0))
	})
	t.Run("tls", func(t *testing.T) {
		serverTLS, clientTLS := testnet.SelfSignedTLS(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		d := &tls.Dialer{Config: clientTLS}
		rotateUnderABlockedWrite(t, tls.NewListener(ln, serverTLS), conn.WithWriteTimeout(0), conn.WithDialer(d.DialContext))
	})
}

// rotateUnderABlockedWrite makes a Manager on ln rotate while a Write
// is blocked half-way on its connection, and checks that the Write
// finishes whole on the old connection, and the FIN comes after it.
func rotateUnderABlockedWrite(t *testing.T, ln net.Listener, opts ...conn.Option) {
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*tls.Conn); ok { // the client's dial waits for the handshake
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				err := tc.Handshake()
				tc.SetDeadline(time.Time{})
				if err != nil {
					c.Close()
					continue
				}
			}
			select {
			case accepted <- c:
			default: // a later rotation's
				c.Close()
			}
		}
	}()
	// Long enough that the Write is under way before the rotation even
	// under -race on a loaded machine (200 ms was not: a rotation came
	// first), short enough that a second one does not come before the
	// test is done.
	const age = time.Second
	switched := make(chan struct{}, 1)
	hook := conn.WithStateHook(func(e conn.Event) {
		if e.Switch != conn.NoSwitch {
			select {
			case switched <- struct{}{}:
			default:
			}
		}
	})
	m := conn.New(ln.Addr().Network(), ln.Addr().String(), append(opts, conn.WithMaxConnectionAge(age), hook)...)
	defer m.Close()
	if m.Take() == nil {
		t.Fatal("no connection")
	}
	old := <-accepted
	defer old.Close()

	big := bytes.Repeat([]byte("0123456789abcde\n"), 1<<20) // 16 MiB: far more than the socket buffers
	wrote := make(chan error, 1)
	go func() {
		n, err := m.Write(big)
		if err == nil && n != len(big) {
			err = io.ErrShortWrite
		}
		wrote <- err
	}()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(old, head); err != nil { // the Write is under way
		t.Fatal(err)
	}
	var fresh net.Conn
	select {
	case fresh = <-accepted: // the rotation's dial
	case <-time.After(10 * time.Second):
		t.Fatal("no rotation")
	}
	defer fresh.Close()
	select {
	case <-switched:
	case <-time.After(10 * time.Second):
		t.Fatal("the rotation did not switch")
	}
	if _, err := m.Write([]byte("after\n")); err != nil {
		t.Fatalf("a Write after the rotation: %v", err)
	}
	got := make([]byte, 6)
	fresh.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(fresh, got); err != nil || string(got) != "after\n" {
		t.Fatalf("the new connection read %q, %v: want the Write after the rotation", got, err)
	}
	select {
	case err := <-wrote:
		t.Fatalf("the Write under way returned (%v) while the old connection's peer did not read", err)
	default:
	}

	// The peer reads on: all of the Write, then the FIN.
	old.SetReadDeadline(time.Now().Add(30 * time.Second))
	rest, err := io.ReadAll(old)
	if err != nil {
		t.Fatalf("reading the old connection: %v", err)
	}
	if all := append(head, rest...); !bytes.Equal(all, big) {
		t.Fatalf("the old connection carried %d bytes before its FIN, want the %d of the Write under way, whole", len(all), len(big))
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("the Write under way at the rotation: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Write under way did not return")
	}
	if st := m.Stats(); st.Lost != 0 {
		t.Errorf("Stats() = %+v: want no loss", st)
	}
}
