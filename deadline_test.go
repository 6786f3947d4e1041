package conn_test

import (
	"errors"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed44b27a20/conn"
)

// newStalled returns a Manager writing through stallConns, with the given
// write timeout, and its network, once the first connection is up.
func newStalled(t *testing.T, timeout time.Duration) (*stallNet, *conn.Manager) {
	t.Helper()
	s := &stallNet{}
	m := conn.New("stall", "", conn.WithDialer(contextFree(s.Dial)), conn.WithWriteTimeout(timeout))
	t.Cleanup(func() { m.Close() })
	if m.Take() == nil {
		t.Fatal("no connection")
	}
	return s, m
}

type timedWrite struct {
	start, end time.Time
	err        error
}

// A stalled Write must not be kept stalled by Writes that arrive after it:
// each Write returns within the write timeout of its own start, and those
// queued behind the stalled one fail with it.
func TestStalledWriteReturnsWithinItsOwnTimeoutWhateverOthersDo(t *testing.T) {
	const timeout = 400 * time.Millisecond
	for _, every := range []time.Duration{20 * time.Millisecond, 300 * time.Millisecond} {
		t.Run("a new writer every "+every.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, m := newStalled(t, timeout)
				var (
					mu     sync.Mutex
					writes []timedWrite
					wg     sync.WaitGroup
				)
				write := func(size int) {
					start := time.Now()
					_, err := m.Write(make([]byte, size))
					mu.Lock()
					writes = append(writes, timedWrite{start, time.Now(), err})
					mu.Unlock()
				}
				wg.Go(func() { write(32 << 20) })
				for range int(3 * time.Second / every) {
					time.Sleep(every)
					wg.Go(func() { write(51) })
				}
				wg.Wait()

				first := writes[0]
				for _, w := range writes {
					if w.start.Before(first.start) {
						first = w
					}
				}
				if took := first.end.Sub(first.start); took < timeout*7/8 || took > timeout {
					t.Errorf("the stalled Write returned after %v, want within [%v, %v]", took, timeout*7/8, timeout)
				}
				if !errors.Is(first.err, os.ErrDeadlineExceeded) {
					t.Errorf("the stalled Write: %v, want a timeout", first.err)
				}
				late := 0
				for _, w := range writes {
					if took := w.end.Sub(w.start); took > timeout {
						if late++; late > 3 {
							continue
						}
						t.Errorf("a Write started at +%v returned after %v, more than the %v timeout (%v)",
							w.start.Sub(first.start), took, timeout, w.err)
					}
					if w.start.Before(first.end) && w.end.After(first.end) {
						t.Errorf("a Write queued behind the stalled one returned %v after it failed", w.end.Sub(first.end))
					}
				}
				if late > 3 {
					t.Errorf("... %d Writes in all returned later than the timeout after their start", late)
				}
			})
		})
	}
}

// The deadline must follow a connection that keeps accepting Writes: a
// steady stream of Writes on a healthy connection never times out, however
// long it lasts, and each refreshes the deadline at most lazily.
func TestDeadlineFollowsAHealthyConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 400 * time.Millisecond
		s, m := newStalled(t, timeout)
		s.Conn(0).flow(true)
		for i := range 200 { // 10 s, 25 times the timeout
			start := time.Now()
			if _, err := m.Write([]byte("x")); err != nil {
				t.Fatalf("Write %d on a healthy connection: %v", i, err)
			}
			if took := time.Since(start); took != 0 {
				t.Fatalf("Write %d on a healthy connection took %v, want no wait: the deadline must stay ahead", i, took)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if st := m.Stats(); st.Dials != 1 {
			t.Errorf("%d dials, want 1", st.Dials)
		}
	})
}

// A Write after a pause longer than the timeout gets a fresh deadline: the
// old one has passed, and no earlier Write can be waiting on it.
func TestWriteAfterALongPauseGetsAFreshDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 400 * time.Millisecond
		s, m := newStalled(t, timeout)
		s.Conn(0).flow(true)
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * timeout)
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatalf("Write after a pause of 3 timeouts: %v", err)
		}
	})
}

// With a write timeout of zero no deadline is set at all.
func TestZeroWriteTimeoutSetsNoDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		m := newFake(t, f, conn.WithWriteTimeout(0))
		for range 10 {
			if _, err := m.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
		}
		if n := f.Conn(0).deadlines.Load(); n != 0 {
			t.Errorf("%d write deadlines set with the timeout disabled, want 0", n)
		}
	})
}

// The deadline is set lazily: a busy connection sets it about once per
// eighth of the timeout, not once per Write.
func TestDeadlineIsRefreshedLazily(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		const timeout = 800 * time.Millisecond
		m := newFake(t, f, conn.WithWriteTimeout(timeout))
		for range 1000 { // 10 s
			if _, err := m.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// One per 100 ms at most: 100, plus the first.
		if n := f.Conn(0).deadlines.Load(); n < 10 || n > 101 {
			t.Errorf("%d deadlines set over 1000 Writes in 10 s, want one per eighth of the timeout (≤ 101)", n)
		}
	})
}

// A Write that arrives just as the deadline passes on a connection without
// a socket waits, at most an eighth of the timeout and 20 ms, for a Write
// blocked on that deadline to fail and retire the connection before it
// moves the deadline: moved earlier, it would hold that Write again.
func TestWriteAsTheDeadlinePassesWaitsForBlockedWritesToFail(t *testing.T) {
	for _, tc := range []struct {
		timeout, grace time.Duration
	}{
		{400 * time.Millisecond, 20 * time.Millisecond},
		{80 * time.Millisecond, 10 * time.Millisecond},
	} {
		t.Run("idle connection, timeout "+tc.timeout.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, m := newStalled(t, tc.timeout)
				s.Conn(0).flow(true)
				if _, err := m.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tc.timeout) // the deadline passes now
				start := time.Now()
				if _, err := m.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				if want, have := tc.grace, time.Since(start); want != have {
					t.Errorf("the Write waited %v, want %v", have, want)
				}
			})
		})
	}
	t.Run("a Write blocked on it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const timeout = 400 * time.Millisecond
			_, m := newStalled(t, timeout)
			blocked := make(chan error)
			go func() { _, err := m.Write([]byte("stuck")); blocked <- err }()
			time.Sleep(timeout)
			start := time.Now()
			_, err := m.Write([]byte("x"))
			if took := time.Since(start); took != 0 {
				t.Errorf("the Write waited %v, want none: the blocked Write failed at once", took)
			}
			if err == nil {
				t.Error("a Write on the connection a stalled Write retired succeeded")
			}
			if err := <-blocked; !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("the blocked Write: %v, want a timeout", err)
			}
		})
	})
}
