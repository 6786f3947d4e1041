package conn_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed44b27a20/conn"
)

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
			{399 * time.Millisecond, false},
			{400 * time.Millisecond, true}, // at least 4 × 100 ms
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

// WithBackoff(d, d) is valid: every wait is d/2 to d.
func TestBackoffWithEqualBaseAndMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("down")}
		after := &afterRecorder{}
		const d = 200 * time.Millisecond
		m := newFake(t, f, conn.WithAfterFunc(after.After), conn.WithBackoff(d, d))
		m.Take()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		waits := after.Waits()
		if len(waits) < 20 {
			t.Fatalf("%d waits in 10 s, want at least 20", len(waits))
		}
		for _, w := range waits {
			if w < d/2 || w > d {
				t.Fatalf("wait %v, want within [%v, %v]", w, d/2, d)
			}
		}
		m.Close()
	})
}
