package conn_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed44b27a20/conn"
)

// Checks that pass: kept as evidence of what was found sound.

func TestSoundCloseWhileADrainWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stallNet{}
		m := conn.New("tcp", "a:1", conn.WithDialer(contextFree(s.Dial)), conn.WithMaxConnectionAge(10*time.Second), conn.WithWriteTimeout(0))
		m.Take()
		errc := make(chan error, 1)
		go func() { _, err := m.Write([]byte("x")); errc <- err }() // stalls on conn 0
		time.Sleep(11 * time.Second)                                // rotated: conn 0 drains
		s.Conn(1).flow(true)
		time.Sleep(12 * time.Second) // rotated again: conn 1 drained at once
		synctest.Wait()
		if st := m.Stats(); st.Switches != 2 {
			t.Errorf("Stats %+v", st)
		}
		start := time.Now()
		m.Close()
		if time.Since(start) != 0 {
			t.Errorf("Close took %v", time.Since(start))
		}
		if err := <-errc; err == nil {
			t.Error("the stalled Write succeeded")
		}
	})
}

// failOnRelease blocks its first Write until released, then fails it with
// nothing written.
type failOnRelease struct {
	fakeConn
	release atomic.Pointer[chan struct{}]
}

func (c *failOnRelease) Write(b []byte) (int, error) {
	if r := c.release.Swap(nil); r != nil {
		<-*r
		return 0, errBroken
	}
	return c.fakeConn.Write(b)
}

func TestSoundAWriteFailingOnTheOldLinkMovesToTheNewOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu       sync.Mutex
			allConns []*failOnRelease
		)
		dial := func(context.Context, string, string) (net.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			c := &failOnRelease{fakeConn: fakeConn{local: &net.TCPAddr{Port: len(allConns)}}}
			allConns = append(allConns, c)
			return c, nil
		}
		conns := func() []*failOnRelease { mu.Lock(); defer mu.Unlock(); return allConns }
		m := conn.New("tcp", "a:1", conn.WithDialer(dial), conn.WithMaxConnectionAge(10*time.Second), conn.WithWriteTimeout(0))
		defer m.Close()
		if _, err := m.Write([]byte("a")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		rel := make(chan struct{})
		conns()[0].release.Store(&rel)
		errc := make(chan error, 1)
		go func() { _, err := m.Write([]byte("b")); errc <- err }()
		time.Sleep(10 * time.Second) // rotated while the Write is under way
		synctest.Wait()
		if len(conns()) != 2 {
			t.Fatalf("%d conns", len(conns()))
		}
		close(rel)
		if err := <-errc; err != nil {
			t.Errorf("Write that failed with nothing written on the switched-out link: %v", err)
		}
		if got := conns()[1].data(); got != "b" {
			t.Errorf("new link has %q", got)
		}
		if st := m.Stats(); st.Lost != 0 {
			t.Errorf("Stats %+v", st)
		}
	})
}

func TestSoundPanickingDialerInARound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("b:1")
		dial := func(ctx context.Context, network, address string) (net.Conn, error) {
			if address == "a:1" {
				panic("boom")
			}
			return h.Dial(ctx, network, address)
		}
		m := conn.New("tcp", "a:1", conn.WithDialer(dial), conn.WithEndpoints("b:1"))
		defer m.Close()
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if st := m.Stats(); st.Endpoint != "b:1" {
			t.Errorf("Stats %+v", st)
		}
	})
}
