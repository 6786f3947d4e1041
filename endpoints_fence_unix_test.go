//go:build unix

package conn_test

// A rotation of a connection that sat idle past its write timeout still
// closes it for writing and lingers: a close at once, with the peer's
// greeting unread, would send a reset and discard what the peer had not
// yet read.

import (
	"bytes"
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

func TestRotationOfALinkIdlePastItsWriteTimeoutLosesNothing(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { // a small window: the lines wait in the sender's queue
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		err error
	}
	release, first := make(chan struct{}), make(chan result, 1)
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 hello\n")) // a greeting the client never reads
			go func() {
				defer c.Close()
				if i == 0 {
					<-release // reads only after the rotation
				}
				n, err := io.Copy(io.Discard, c)
				if i == 0 {
					first <- result{n, err}
				}
			}()
		}
	}()
	switched := make(chan struct{}, 1)
	const timeout = 100 * time.Millisecond
	m := conn.New("tcp", ln.Addr().String(), conn.WithWriteTimeout(timeout), conn.WithMaxConnectionAge(700*time.Millisecond),
		conn.WithStateHook(func(e conn.Event) {
			if e.Switch != conn.NoSwitch {
				select {
				case switched <- struct{}{}:
				default:
				}
			}
		}))
	defer m.Close()
	if m.Take() == nil {
		t.Fatal("no connection")
	}
	line := append(bytes.Repeat([]byte("x"), 99), '\n')
	var total int64
	for range 80 { // 8000 bytes: more than the peer's window
		n, err := m.Write(line)
		if err != nil {
			t.Fatal(err)
		}
		total += int64(n)
	}
	time.Sleep(2 * timeout) // idle past the write timeout: the deadline passes
	select {
	case <-switched:
	case <-time.After(10 * time.Second):
		t.Fatal("no rotation")
	}
	// What closes the old connection does so right after the switch:
	// give a close at once the time to send its reset.
	time.Sleep(200 * time.Millisecond)
	close(release)
	select {
	case r := <-first:
		if r.n != total || r.err != nil {
			t.Fatalf("the old connection's peer read %d of the %d bytes written on it, then %v: want them all, then its FIN", r.n, total, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the old connection's peer did not reach its end")
	}
}
