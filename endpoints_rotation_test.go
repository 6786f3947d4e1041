package conn_test

// Rotation (WithMaxConnectionAge): the replacement is dialed first, and the old
// connection closed only once the Writes under way on it have returned.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

func TestRotationClosesTheOldConnectionOnlyAfterTheWritesUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		f := &fakeNet{}
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithMaxConnectionAge(age), conn.WithWriteTimeout(0))
		defer m.Close()
		if _, err := m.Write([]byte("a")); err != nil {
			t.Fatal(err)
		}
		old := f.Conn(0)
		gate := make(chan struct{})
		old.gate = gate // the next Write on it blocks
		blocked := make(chan error)
		go func() {
			_, err := m.Write([]byte("b"))
			blocked <- err
		}()
		time.Sleep(age * 11 / 10)
		synctest.Wait()
		if f.Dials() != 2 {
			t.Fatalf("%d dials after the maximum age, want the rotation's", f.Dials())
		}
		if _, err := m.Write([]byte("c")); err != nil {
			t.Fatalf("Write after the rotation: %v", err)
		}
		if got := f.Conn(1).data(); got != "c" {
			t.Errorf("the new connection received %q, want the Write after the rotation", got)
		}
		if old.closed.Load() {
			t.Fatal("the old connection was closed while a Write was under way on it")
		}
		close(gate)
		if err := <-blocked; err != nil {
			t.Errorf("the Write under way at the rotation: %v", err)
		}
		synctest.Wait()
		if !old.closed.Load() || old.data() != "ab" {
			t.Errorf("old connection: closed %v, data %q: want closed once its Write returned, with a and b", old.closed.Load(), old.data())
		}
		if st := m.Stats(); st.Switches != 1 || st.Lost != 0 {
			t.Errorf("Stats() = %+v: want one switch and no loss", st)
		}
	})
}

func TestRotationWaitsForTheBatchUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		f := &fakeNet{}
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithMaxConnectionAge(age), conn.WithWriteTimeout(0))
		defer m.Close()
		m.Take()
		old := f.Conn(0)
		gate := make(chan struct{})
		old.gate = gate // the first batch blocks
		w := conn.NewBatchWriter(m)
		defer w.Close()
		fmt.Fprintln(w, "a")
		synctest.Wait()
		time.Sleep(age * 11 / 10)
		synctest.Wait()
		if m.Stats().Switches != 1 || old.closed.Load() {
			t.Fatalf("Stats() = %+v, old closed %v: want rotated, the old connection open while a batch is under way on it", m.Stats(), old.closed.Load())
		}
		close(gate)
		fmt.Fprintln(w, "b")
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !old.closed.Load() || old.data() != "a\n" || f.Conn(1).data() != "b\n" {
			t.Errorf("old: closed %v, %q; new: %q: want the batch whole on the old one, then closed, and the next on the new one", old.closed.Load(), old.data(), f.Conn(1).data())
		}
	})
}

func TestFailedRotationKeepsTheConnectionAndRetriesAfterTheAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		f := &fakeNet{}
		var lines syncBuffer
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithMaxConnectionAge(age), conn.WithLogger(log.NewLogfmtLogger(&lines)))
		defer m.Close()
		if _, err := m.Write([]byte("a")); err != nil {
			t.Fatal(err)
		}
		f.set(func(f *fakeNet) { f.dialErr = errRefused })
		defer func() {
			if !strings.Contains(lines.String(), `msg="switch failed; keeping the connection" switch=rotation`) {
				t.Errorf("log lacks the failed rotation:\n%s", lines.String())
			}
		}()
		time.Sleep(age * 11 / 10)
		if f.Dials() != 2 {
			t.Fatalf("%d dials, want the failed rotation's", f.Dials())
		}
		if _, err := m.Write([]byte("b")); err != nil || f.Conn(0).data() != "ab" {
			t.Errorf("Write after a failed rotation: %v, data %q: want it on the old connection", err, f.Conn(0).data())
		}
		f.set(func(f *fakeNet) { f.dialErr = nil })
		time.Sleep(age * 11 / 10)
		synctest.Wait()
		if st := m.Stats(); f.Dials() != 3 || st.Switches != 1 || st.DialFailures != 1 {
			t.Errorf("%d dials, Stats() = %+v: want the rotation retried after another age", f.Dials(), st)
		}
	})
}

func TestASwitchKeepsStatsSince(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		f := &fakeNet{}
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithMaxConnectionAge(age))
		defer m.Close()
		m.Take()
		since := m.Stats().Since
		time.Sleep(age * 11 / 10)
		synctest.Wait()
		if st := m.Stats(); st.Switches != 1 || !st.Since.Equal(since) {
			t.Errorf("Stats() = %+v after a rotation, want Since unchanged (%v): the state stayed Connected", st, since)
		}
		f.Conn(1).fail(errBroken)
		m.Write([]byte("x"))
		synctest.Wait()
		if st := m.Stats(); st.Since.Equal(since) {
			t.Errorf("Stats() = %+v after a loss, want Since moved", st)
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

func TestAWriteFailingOnTheOldLinkMovesToTheNewOne(t *testing.T) {
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

// A regression test from an adversarial review. What it caught:
// RELIABILITY.md: "a switch may close such a connection [handed out by
// Take] under its user, whose write then fails ... Put of that error is
// ignored, since it names the old connection." A connection whose Write
// after Close returns a bare net.ErrClosed (crypto/tls.Conn does exactly
// that; so does any wrapper) names nothing, and Put of it retires the new,
// healthy connection: a switch then turns into a loss.
func TestPutOfATakenConnsErrorAfterARotationKeepsTheNewConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		f := &fakeNet{}
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithMaxConnectionAge(age))
		defer m.Close()
		c := m.Take() // go-kit's idiom: Take, write, Put the error
		if _, err := c.Write([]byte("a")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(age * 11 / 10) // rotated; the old connection closed (no Write of the Manager under way)
		synctest.Wait()
		if st := m.Stats(); st.Switches != 1 {
			t.Fatalf("Stats() = %+v, want a rotation", st)
		}
		_, err := c.Write([]byte("b")) // the user's connection was closed under it
		m.Put(err)
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write on the switched-out connection: %v", err)
		}
		synctest.Wait()
		if st := m.Stats(); st.Lost != 0 || f.Conn(1).closed.Load() {
			t.Errorf("Put of the old connection's error: Stats %+v, new connection closed %v; want it ignored", st, f.Conn(1).closed.Load())
		}
	})
}

// A maximum age of a few nanoseconds (spread by ±10%, which rounds to
// nothing) rotates as often as it can, and nothing breaks.
func TestRotationWithATinyMaximumAge(t *testing.T) {
	for _, age := range []time.Duration{1, 5, 9} {
		synctest.Test(t, func(t *testing.T) {
			h := newHosts("a:1", "b:1")
			m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"), conn.WithMaxConnectionAge(age))
			defer m.Close()
			for i := range 3 {
				if _, err := m.Write([]byte("x")); err != nil {
					t.Fatalf("age %v, Write %d: %v", age, i, err)
				}
				time.Sleep(time.Microsecond)
			}
			if st := m.Stats(); st.Switches == 0 {
				t.Fatalf("age %v: Stats() = %+v, want rotations", age, st)
			}
		})
	}
}

// The Manager's Close during a rotation whose dial hangs ends the dial and
// closes the connection in use: nothing is left open, nothing breaks.
func TestCloseDuringARotationDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		h.at("b:1").hang = true
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"), conn.WithMaxConnectionAge(10*time.Second),
			conn.WithLogger(log.NewNopLogger()))
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		h.at("a:1").set(func(f *fakeNet) { f.hang = true })
		time.Sleep(20 * time.Second) // the rotation's dials hang
		synctest.Wait()
		if n := len(h.dialsOf("a:1")); n < 2 {
			t.Fatal("no rotation dial within two maximum ages")
		}
		m.Close()
		synctest.Wait()
		if !h.at("a:1").Conn(0).closed.Load() {
			t.Error("a:1's connection left open after the Manager's Close")
		}
		if st := m.Stats(); st.Switches != 0 {
			t.Errorf("Stats() = %+v, want no switch", st)
		}
	})
}
