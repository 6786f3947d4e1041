package conn_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"

	"github.com/seed44b27a20/conn"
)

// newFake returns a Manager dialing f, closed when the test ends.
func newFake(t *testing.T, f *fakeNet, opts ...conn.Option) *conn.Manager {
	t.Helper()
	m := conn.New("tcp", "fake:1", append([]conn.Option{conn.WithDialer(f.Dial)}, opts...)...)
	t.Cleanup(func() { m.Close() })
	return m
}

func TestFirstTakeWaitsForFirstDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{delay: 200 * time.Millisecond}
		m := newFake(t, f)
		start := time.Now()
		if m.Take() == nil {
			t.Fatal("Take: nil, want the first connection")
		}
		if want, have := 200*time.Millisecond, time.Since(start); want != have {
			t.Errorf("Take waited %v, want %v", have, want)
		}
		m.Close()
	})
}

func TestFirstWaitIsBoundedWhileDialHangs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{hang: true}
		m := newFake(t, f)
		start := time.Now()
		if c := m.Take(); c != nil {
			t.Fatalf("Take: %v, want nil", c)
		}
		if want, have := time.Second, time.Since(start); want != have {
			t.Errorf("first Take waited %v, want %v", have, want)
		}
		start = time.Now()
		if _, err := m.Write([]byte("x")); !errors.Is(err, conn.ErrConnectionUnavailable) {
			t.Errorf("Write: %v, want ErrConnectionUnavailable", err)
		}
		if have := time.Since(start); have != 0 {
			t.Errorf("Write after the first wait took %v, want 0", have)
		}
		start = time.Now()
		m.Close()
		if have := time.Since(start); have != 0 {
			t.Errorf("Close during a hanging dial took %v, want 0", have)
		}
	})
}

func TestDialTimeoutEndsHangingDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{hang: true}
		after := &afterRecorder{}
		m := newFake(t, f, conn.WithDialTimeout(3*time.Second), conn.WithAfterFunc(after.After))
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		st := m.Stats()
		if st.DialFailures != 1 || !errors.Is(st.LastError, context.DeadlineExceeded) {
			t.Errorf("after the dial timeout: %d failures, last error %v; want 1, context deadline exceeded", st.DialFailures, st.LastError)
		}
		if len(after.Waits()) != 1 {
			t.Errorf("backoff waits %v, want one", after.Waits())
		}
		m.Close()
	})
}

func TestBackoffScheduleGoesThroughAfterFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("refused (fake)")}
		after := &afterRecorder{}
		base, max := 100*time.Millisecond, time.Second
		m := newFake(t, f, conn.WithAfterFunc(after.After), conn.WithBackoff(base, max))
		time.Sleep(20 * time.Second)
		synctest.Wait()

		waits := after.Waits()
		if len(waits) < 10 {
			t.Fatalf("%d waits in 20s, want at least 10: %v", len(waits), waits)
		}
		nominal := base
		for i, w := range waits {
			if lo, hi := nominal/2, min(nominal+nominal/2, max); w < lo || w > hi {
				t.Errorf("wait %d: %v, want within [%v, %v]", i+1, w, lo, hi)
			}
			nominal = min(2*nominal, max)
		}
		st := m.Stats()
		if st.Dials != uint64(len(waits)) && st.Dials != uint64(len(waits)+1) {
			t.Errorf("%d dials for %d waits", st.Dials, len(waits))
		}
		if st.Dials != st.DialFailures || st.State != conn.Disconnected {
			t.Errorf("stats %+v, want every dial failed and Disconnected", st)
		}

		f.set(func(f *fakeNet) { f.dialErr = nil })
		time.Sleep(max)
		if m.Take() == nil {
			t.Fatal("no connection within the cap after the dialer recovered")
		}
		m.Close()
	})
}

// The seed's contract, as go-kit's own test checks it: after Put(err) no
// connection is handed out until the AfterFunc's channel fires.
func TestPutWaitsForAfterFuncBeforeRedial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tick := make(chan time.Time)
		f := &fakeNet{}
		m := newFake(t, f, conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }))
		if m.Take() == nil {
			t.Fatal("no first connection")
		}
		m.Put(errors.New("kill it"))
		synctest.Wait()
		for i := 0; i < 10; i++ {
			if c := m.Take(); c != nil {
				t.Fatalf("Take %d after Put: %v, want nil", i, c)
			}
		}
		if want, have := 1, f.Dials(); want != have {
			t.Fatalf("dials before the tick: %d, want %d", have, want)
		}
		tick <- time.Now()
		synctest.Wait()
		if m.Take() == nil || f.Dials() != 2 {
			t.Fatalf("after the tick: %d dials, Take %v", f.Dials(), m.Take())
		}
		if !f.Conn(0).closed.Load() {
			t.Error("the invalidated connection was not closed")
		}
		m.Close()
	})
}

func TestPutNilAndStaleErrorsKeepTheConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		m := newFake(t, f)
		c := m.Take()
		m.Put(nil)
		stale := &net.OpError{Op: "write", Net: "tcp",
			Source: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
			Addr:   fakeRemote, Err: errors.New("broken pipe")}
		m.Put(stale)
		if m.Take() != c {
			t.Fatal("Put(nil) or an error naming another connection replaced the connection")
		}
		ours := &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errors.New("broken pipe")}
		m.Put(ours)
		if m.Take() != nil {
			t.Fatal("an error naming the current connection did not invalidate it")
		}
		m.Close()
	})
}

func TestManyFailedWritesRedialOnceAndRecover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		m := newFake(t, f)
		if _, err := m.Write([]byte("proof")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // long enough for the connection to prove itself
		f.Conn(0).fail(errBroken)

		const writers = 16
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for range writers {
			wg.Go(func() {
				_, err := m.Write([]byte("line\n"))
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Write: %v, want nil: a dead proven connection is replaced transparently", err)
			}
		}
		if want, have := 2, f.Dials(); want != have {
			t.Errorf("dials: %d, want %d", have, want)
		}
		if want, have := int64(writers), f.Conn(1).writes.Load(); want != have {
			t.Errorf("writes on the new connection: %d, want %d", have, want)
		}
		if st := m.Stats(); st.Lost != 1 {
			t.Errorf("Stats.Lost = %d, want 1", st.Lost)
		}
		m.Close()
	})
}

func TestUnprovenConnectionIsRedialedAfterBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		after := &afterRecorder{}
		m := newFake(t, f, conn.WithAfterFunc(after.After))
		if m.Take() == nil {
			t.Fatal("no first connection")
		}
		f.Conn(0).fail(errBroken)
		if _, err := m.Write([]byte("x")); !errors.Is(err, errBroken) {
			t.Fatalf("Write: %v, want the connection's error", err)
		}
		if _, err := m.Write([]byte("x")); !errors.Is(err, conn.ErrConnectionUnavailable) {
			t.Fatalf("Write while backing off: %v, want ErrConnectionUnavailable", err)
		}
		synctest.Wait()
		if waits := after.Waits(); len(waits) != 1 || waits[0] < conn.DefaultBackoffBase/2 {
			t.Fatalf("waits %v, want one backoff wait", waits)
		}
		time.Sleep(after.Waits()[0])
		synctest.Wait()
		if f.Dials() != 2 || m.Take() == nil {
			t.Fatalf("after the backoff: %d dials, want 2 and a connection", f.Dials())
		}
		m.Close()
	})
}

func TestWriteTimesOutWhenPeerStopsReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu    sync.Mutex
			peers []net.Conn
		)
		dial := func(string, string) (net.Conn, error) {
			c, peer := net.Pipe() // nobody reads peer
			mu.Lock()
			peers = append(peers, peer)
			mu.Unlock()
			return c, nil
		}
		m := conn.New("pipe", "", conn.WithDialer(nil), conn.WithWriteTimeout(2*time.Second))
		m.Close()
		m = conn.NewManager(dial, "pipe", "", nil, nil)
		m.Close()
		m = conn.New("pipe", "", conn.WithWriteTimeout(2*time.Second), conn.WithBackoff(10*time.Millisecond, time.Second),
			conn.WithDialer(contextFree(dial)))
		defer func() {
			m.Close()
			mu.Lock()
			for _, p := range peers {
				p.Close()
			}
			mu.Unlock()
		}()
		start := time.Now()
		_, err := m.Write([]byte("stuck"))
		took := time.Since(start)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write: %v, want a timeout", err)
		}
		if took > 2*time.Second || took < 2*time.Second*7/8 {
			t.Errorf("Write failed after %v, want within [1.75s, 2s]", took)
		}
		if m.Take() != nil {
			t.Error("the stalled connection is still handed out")
		}
		time.Sleep(time.Second)
		if m.Take() == nil {
			t.Error("no new connection after the backoff")
		}
	})
}

func TestCloseInEveryState(t *testing.T) {
	cases := []struct {
		name  string
		setup func(f *fakeNet) []conn.Option
	}{
		{"connected", func(f *fakeNet) []conn.Option { return nil }},
		{"dialing", func(f *fakeNet) []conn.Option { f.hang = true; return nil }},
		{"backing off, AfterFunc never fires", func(f *fakeNet) []conn.Option {
			f.dialErr = errors.New("down")
			return []conn.Option{conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return nil })}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeNet{}
				m := newFake(t, f, tc.setup(f)...)
				m.Take()
				var wg sync.WaitGroup
				for range 4 {
					wg.Go(func() {
						for range 100 {
							m.Write([]byte("x"))
							m.Take()
							m.Put(errors.New("x"))
						}
					})
				}
				wg.Go(func() { m.Close() })
				m.Close()
				m.Close()
				wg.Wait()
				if c := m.Take(); c != nil {
					t.Errorf("Take after Close: %v", c)
				}
				if _, err := m.Write([]byte("x")); !errors.Is(err, conn.ErrClosed) {
					t.Errorf("Write after Close: %v, want ErrClosed", err)
				}
				m.Put(errors.New("after close"))
				if st := m.Stats(); st.State != conn.Closed {
					t.Errorf("state after Close: %v", st.State)
				}
				for i := range len(f.conns) {
					if !f.Conn(i).closed.Load() {
						t.Errorf("connection %d left open", i)
					}
				}
			})
		})
	}
}

func TestCloseAbandonsContextlessDial(t *testing.T) {
	started, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	dial := func(string, string) (net.Conn, error) {
		defer close(returned)
		close(started)
		<-release
		c, _ := net.Pipe()
		return c, nil
	}
	m := conn.NewManager(dial, "pipe", "", nil, log.NewNopLogger())
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the dial did not start")
	}
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a Dialer that does not return")
	}
	close(release)
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the dial goroutine did not end")
	}
}

func TestStateHookAndLogLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu     sync.Mutex
			events []conn.Event
			lines  int
		)
		hook := func(ev conn.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }
		logger := log.LoggerFunc(func(...any) error { mu.Lock(); lines++; mu.Unlock(); return nil })
		tick := make(chan time.Time)
		after := func(time.Duration) <-chan time.Time { return tick }
		f := &fakeNet{}
		m := newFake(t, f, conn.WithStateHook(hook), conn.WithLogger(logger), conn.WithAfterFunc(after))
		m.Take()
		f.set(func(f *fakeNet) { f.dialErr = errors.New("down") })
		m.Put(errors.New("lost"))
		for range 100 { // failed Writes are not logged
			m.Write([]byte("x"))
		}
		tick <- time.Now() // this redial fails
		synctest.Wait()
		f.set(func(f *fakeNet) { f.dialErr = nil })
		tick <- time.Now() // this one succeeds
		synctest.Wait()
		m.Close()

		want := []conn.State{conn.Connected, conn.Disconnected, conn.Disconnected, conn.Connected, conn.Closed}
		mu.Lock()
		defer mu.Unlock()
		if len(events) != len(want) {
			t.Fatalf("events %+v, want states %v", events, want)
		}
		for i, ev := range events {
			if ev.State != want[i] {
				t.Errorf("event %d: %v, want %v", i, ev.State, want[i])
			}
		}
		if ev := events[2]; ev.Attempt != 2 || ev.Err == nil || ev.Wait <= 0 {
			t.Errorf("dial failure event %+v, want attempt 2 with an error and a wait", ev)
		}
		if lines != len(events) {
			t.Errorf("%d log lines for %d state changes", lines, len(events))
		}
		if st := m.Stats(); st.Dials != 3 || st.DialFailures != 1 || st.Lost != 1 {
			t.Errorf("stats %+v, want 3 dials, 1 failure, 1 lost", st)
		}
	})
}

// A proven connection that is lost is redialed at once: the AfterFunc,
// which paces the backoff, is not consulted.
func TestLosingAProvenConnectionRedialsWithoutWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		after := &afterRecorder{}
		m := newFake(t, f, conn.WithAfterFunc(after.After))
		if _, err := m.Write([]byte("proof")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		m.Put(errors.New("lost"))
		synctest.Wait()
		if waits := after.Waits(); len(waits) != 0 {
			t.Errorf("waits %v after losing a proven connection, want none", waits)
		}
		if f.Dials() != 2 || m.Take() == nil {
			t.Errorf("%d dials, want an immediate redial", f.Dials())
		}
		m.Close()
	})
}

// After a proven connection is lost, the backoff starts again from its
// base: earlier failures are forgotten.
func TestBackoffCountResetsAfterAProvenConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("down")}
		after := &afterRecorder{}
		const base = 100 * time.Millisecond
		m := newFake(t, f, conn.WithAfterFunc(after.After), conn.WithBackoff(base, time.Minute))
		m.Take()
		time.Sleep(10 * time.Second) // ≥ 6 failures: the nominal wait has reached 3.2 s
		synctest.Wait()
		f.set(func(f *fakeNet) { f.dialErr = nil })
		time.Sleep(time.Minute)
		if _, err := m.Write([]byte("proof")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		f.set(func(f *fakeNet) { f.dialErr = errors.New("down again") })
		failures := len(after.Waits())
		m.Put(errors.New("lost"))
		synctest.Wait()
		waits := after.Waits()
		if len(waits) != failures+1 {
			t.Fatalf("waits %v", waits)
		}
		if w := waits[failures]; w < base/2 || w > base*3/2 {
			t.Errorf("first wait after losing a proven connection: %v, want the base %v ± 50%%", w, base)
		}
		m.Close()
	})
}

// The proof age grows with the dial time: a connection must live four
// times as long as its dial took (at least 10 ms) before its loss counts
// as that of a proven one.
func TestProofAgeGrowsWithTheDialTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const dial = 100 * time.Millisecond
		f := &fakeNet{delay: dial}
		var waits atomic.Int32
		tick := make(chan time.Time)
		after := func(time.Duration) <-chan time.Time { waits.Add(1); return tick }
		m := newFake(t, f, conn.WithAfterFunc(after))
		m.Take()
		time.Sleep(5 * time.Second) // so that later dials do not start at the epoch
		m.Put(errors.New("renew"))  // unproven: a backoff wait
		for i, tc := range []struct {
			lived  time.Duration
			proven bool
		}{
			{300 * time.Millisecond, false}, // < 4 × 100 ms
			{500 * time.Millisecond, true},
		} {
			synctest.Wait()
			tick <- time.Now() // the next dial starts
			time.Sleep(dial)   // and ends: the connection is born
			synctest.Wait()
			if _, err := m.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(tc.lived)
			before := waits.Load()
			m.Put(errors.New("lost"))
			synctest.Wait()
			if waited := waits.Load() > before; waited == tc.proven {
				t.Errorf("case %d: a connection that wrote and lived %v, dialed in %v: backoff wait %v, want %v", i, tc.lived, dial, waited, !tc.proven)
			}
			if tc.proven {
				break
			}
		}
		m.Close()
	})
}

// A peer that takes one Write and then drops the connection at once is
// redialed on the backoff schedule, not in a loop: the connection did not
// live long enough to prove itself.
func TestConnectionLostRightAfterItsFirstWriteIsRetriedOnTheSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		after := &afterRecorder{}
		m := newFake(t, f, conn.WithAfterFunc(after.After))
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		f.Conn(0).fail(errBroken)
		if _, err := m.Write([]byte("y")); !errors.Is(err, errBroken) {
			t.Errorf("Write on the dropped connection: %v, want its error", err)
		}
		synctest.Wait()
		if len(after.Waits()) != 1 || f.Dials() != 1 {
			t.Errorf("waits %v, %d dials; want a backoff wait before the next dial", after.Waits(), f.Dials())
		}
		m.Close()
	})
}

// A Write that failed after writing some bytes reports how many, and is
// not written again on the next connection: the peer may have them.
func TestPartlyWrittenWriteIsReportedNotResent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		m := newFake(t, f)
		if _, err := m.Write([]byte("proof\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		f.Conn(0).failAfter(3, errBroken)
		n, err := m.Write([]byte("partial\n"))
		if n != 3 || !errors.Is(err, errBroken) {
			t.Errorf("Write: %d, %v; want 3 and the connection's error", n, err)
		}
		synctest.Wait()
		if f.Dials() != 2 {
			t.Fatalf("%d dials, want an immediate redial", f.Dials())
		}
		if have := f.Conn(1).data(); have != "" {
			t.Errorf("the new connection got %q, want nothing", have)
		}
		m.Close()
	})
}

// The first Take waits for the first dial attempt to finish, whether it
// succeeds or fails.
func TestFirstWaitEndsWhenTheFirstDialFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("refused"), delay: 30 * time.Millisecond}
		m := newFake(t, f)
		start := time.Now()
		if c := m.Take(); c != nil {
			t.Fatal("a connection from a failing dial")
		}
		if want, have := 30*time.Millisecond, time.Since(start); want != have {
			t.Errorf("the first Take waited %v, want %v: the end of the failed dial", have, want)
		}
		m.Close()
	})
}

// The waits for a dial are bounded by the write timeout when it is shorter
// than a second.
func TestWaitForTheFirstDialIsBoundedByTheWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{hang: true}
		m := newFake(t, f, conn.WithWriteTimeout(300*time.Millisecond))
		start := time.Now()
		if _, err := m.Write([]byte("x")); !errors.Is(err, conn.ErrConnectionUnavailable) {
			t.Errorf("Write: %v", err)
		}
		if want, have := 300*time.Millisecond, time.Since(start); want != have {
			t.Errorf("the first Write waited %v, want %v", have, want)
		}
		m.Close()
	})
}

// A dial timeout of zero means no bound: a slow dial is waited for.
func TestZeroDialTimeoutMeansNoBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{delay: time.Hour}
		m := newFake(t, f, conn.WithDialTimeout(0))
		time.Sleep(time.Hour + time.Second)
		if m.Take() == nil {
			t.Errorf("no connection after an hour-long dial; stats %+v", m.Stats())
		}
		m.Close()
	})
}

// A connection that a go-kit Dialer returns after its dial was given up
// (the dial timeout passed, or Close) is closed, not leaked.
func TestConnectionFromAnAbandonedDialIsClosed(t *testing.T) {
	for _, closeIt := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			late := &fakeConn{local: fakeRemote}
			release := make(chan struct{})
			dial := func(string, string) (net.Conn, error) {
				<-release
				return late, nil
			}
			m := conn.New("tcp", "x:1", conn.WithDialTimeout(time.Second), conn.WithBackoff(time.Hour, time.Hour))
			m.Close()
			m = conn.NewManager(dial, "tcp", "x:1", nil, nil)
			if closeIt {
				synctest.Wait()
				m.Close()
			} else {
				time.Sleep(11 * time.Second) // the default dial timeout passes
			}
			close(release)
			synctest.Wait()
			if !late.closed.Load() {
				t.Errorf("close=%v: the connection returned after the dial was given up is open", closeIt)
			}
			m.Close()
		})
	}
}

// Many goroutines that Put errors on one connection at once retire it once:
// one redial, and nothing closed twice.
func TestConcurrentPutsRetireOnce(t *testing.T) {
	f := &fakeNet{}
	m := newFake(t, f, conn.WithBackoff(time.Millisecond, time.Millisecond))
	for round := range 200 {
		c := m.Take()
		for c == nil {
			time.Sleep(time.Millisecond)
			c = m.Take()
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { <-start; m.Put(errors.New("failed")) })
		}
		close(start)
		wg.Wait()
		if st := m.Stats(); st.Lost > uint64(round+1) {
			t.Fatalf("round %d: %d connections lost, want %d", round, st.Lost, round+1)
		}
	}
}

// levels is a slog.Handler that records the level of each message.
type levels struct {
	mu  sync.Mutex
	got map[string]slog.Level
}

func (h *levels) Enabled(context.Context, slog.Level) bool { return true }
func (h *levels) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *levels) WithGroup(string) slog.Handler            { return h }
func (h *levels) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got[r.Message] = r.Level
	return nil
}

// WithSlogLogger logs connecting at Info, losing a connection and failed
// dials at Warn, and recovered panics of user code at Error.
func TestSlogLevels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &levels{got: map[string]slog.Level{}}
		f := &fakeNet{}
		m := newFake(t, f, conn.WithSlogLogger(slog.New(h)), conn.WithStateHook(func(conn.Event) { panic("hook") }),
			conn.WithBackoff(time.Second, time.Second))
		m.Take()
		f.set(func(f *fakeNet) { f.dialErr = errors.New("down") })
		m.Put(errors.New("lost"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		m.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for msg, want := range map[string]slog.Level{
			"connected":       slog.LevelInfo,
			"connection lost": slog.LevelWarn,
			"dial failed":     slog.LevelWarn,
			"state hook panicked; it is called no more": slog.LevelError,
		} {
			if have, ok := h.got[msg]; !ok || have != want {
				t.Errorf("%q logged at %v (logged: %v), want %v", msg, have, ok, want)
			}
		}
	})
}
