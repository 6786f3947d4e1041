package conn_test

// Close of a Manager with several endpoints or a maximum age: it does not wait
// for a round, a drain, a discovery call, nor a Write stalled on an old connection.

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed44b27a20/conn"
)

func TestCloseEndsAStaggeredRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		h.at("a:1").hang = true
		h.at("b:1").hang = true
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"))
		time.Sleep(time.Second)
		start := time.Now()
		m.Close()
		if took := time.Since(start); took != 0 {
			t.Errorf("Close took %v during a round", took)
		}
		if st := m.Stats(); st.State != conn.Closed {
			t.Errorf("state %v", st.State)
		}
	})
}

func TestCloseWhileADrainWaits(t *testing.T) {
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

// A regression test from an adversarial review. What it caught:
// A discovery function that ignores its context (a blocking API client)
// makes Close hang: refresh runs in the Manager's goroutine and Close
// waits for it. NewManager's contextless Dialer is abandoned on Close; a
// discovery call is not.
func TestCloseDoesNotWaitForADiscoveryThatIgnoresItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		release := make(chan struct{})
		calls := 0
		discover := func(context.Context) ([]string, error) {
			calls++
			if calls > 1 {
				<-release // blocks, whatever the context
			}
			return []string{"a:1"}, nil
		}
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithDiscovery(discover),
			conn.WithMaxConnectionAge(time.Second))
		m.Take()
		time.Sleep(2 * time.Second) // the rotation's refresh now blocks
		start := time.Now()
		done := make(chan struct{})
		go func() { m.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Hour):
			t.Errorf("Close blocked for %v on a discovery call", time.Since(start))
		}
		close(release)
		<-done
	})
}

func TestBatchWriterCloseInterruptsAWriteStalledOnASwitchedOutConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		s := &stallNet{}
		m := conn.New("tcp", "a:1", conn.WithDialer(contextFree(s.Dial)), conn.WithMaxConnectionAge(age), conn.WithWriteTimeout(0))
		defer m.Close()
		w := conn.NewBatchWriter(m, conn.WithCloseTimeout(time.Second))
		m.Take()
		fmt.Fprintln(w, "stalls") // the peer does not read: the batch blocks
		time.Sleep(age * 11 / 10) // rotated meanwhile
		synctest.Wait()
		if st := m.Stats(); st.Switches != 1 {
			t.Fatalf("Stats() = %+v, want a rotation", st)
		}
		s.Conn(1).flow(true)
		start := time.Now()
		w.Close()
		if took := time.Since(start); took > time.Second {
			t.Errorf("Close took %v with a write stalled on the old connection, want within its timeout", took)
		}
	})
}
