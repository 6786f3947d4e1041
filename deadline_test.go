package conn_test

import (
	"errors"
	"net"
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

// A stalled Write must not be kept stalled by Writes that arrive after it,
// and those queued behind it fail with it. The stallConn has no file
// descriptor, so the Manager cannot ask the kernel whether a Write is
// blocked: it moves the deadline once without knowing, and the bound is
// twice the timeout (on a Linux socket it is the timeout:
// TestScenarioStalledWriteIsNotProlongedByOtherWriters).
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
				if took := first.end.Sub(first.start); took < timeout*7/8 || took > 2*timeout {
					t.Errorf("the stalled Write returned after %v, want within [%v, %v]", took, timeout*7/8, 2*timeout)
				}
				if !errors.Is(first.err, os.ErrDeadlineExceeded) {
					t.Errorf("the stalled Write: %v, want a timeout", first.err)
				}
				late := 0
				for _, w := range writes {
					if took := w.end.Sub(w.start); took > 2*timeout {
						if late++; late > 3 {
							continue
						}
						t.Errorf("a Write started at +%v returned after %v, more than twice the %v timeout (%v)",
							w.start.Sub(first.start), took, timeout, w.err)
					}
					if w.start.Before(first.end) && w.end.After(first.end) {
						t.Errorf("a Write queued behind the stalled one returned %v after it failed", w.end.Sub(first.end))
					}
				}
				if late > 3 {
					t.Errorf("... %d Writes in all returned later than twice the timeout after their start", late)
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

// slowConn is a healthy connection whose every Write takes per (a peer that
// reads at a finite rate); it honours the write deadline like a socket. It
// has no file descriptor, so the Manager cannot ask the kernel about it.
type slowConn struct {
	fakeConn
	per time.Duration

	mu       sync.Mutex
	deadline time.Time
}

func (c *slowConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	d := c.deadline
	c.mu.Unlock()
	if !d.IsZero() {
		if left := time.Until(d); left < c.per {
			time.Sleep(max(left, 0))
			return 0, os.ErrDeadlineExceeded
		}
	}
	time.Sleep(c.per)
	return len(b), nil
}

func (c *slowConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return nil
}

// On a connection the kernel cannot be asked about, a Write after a pause
// must still get a fresh deadline: it must not run under one that an
// earlier Write left nearly spent, and time out on a healthy connection.
func TestWriteAfterAPauseGetsAFreshDeadlineWithoutAProber(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 400 * time.Millisecond
		c := &slowConn{per: 50 * time.Millisecond}
		m := conn.New("slow", "", conn.WithWriteTimeout(timeout),
			conn.WithDialer(contextFree(func(string, string) (net.Conn, error) { return c, nil })))
		defer m.Close()
		for _, pause := range []time.Duration{0, timeout - 60*time.Millisecond, timeout - 55*time.Millisecond, 10 * time.Millisecond} {
			time.Sleep(pause)
			if _, err := m.Write([]byte("x")); err != nil {
				t.Fatalf("Write after a pause of %v: %v", pause, err)
			}
		}
		if n := m.Stats().Dials; n != 1 {
			t.Errorf("%d dials, want 1", n)
		}
	})
}
