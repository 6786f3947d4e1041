package conn_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"

	"github.com/seed44b27a20/conn"
)

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

// Without WithDialTimeout a dial is given DefaultDialTimeout (10 s).
func TestDefaultDialTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{hang: true}
		m := newFake(t, f, conn.WithBackoff(time.Hour, time.Hour))
		time.Sleep(conn.DefaultDialTimeout - time.Millisecond)
		synctest.Wait()
		if st := m.Stats(); st.DialFailures != 0 {
			t.Errorf("the dial failed before %v: %+v", conn.DefaultDialTimeout, st)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if st := m.Stats(); st.DialFailures != 1 || !errors.Is(st.LastError, context.DeadlineExceeded) {
			t.Errorf("after %v: %+v, want the dial failed by its deadline", conn.DefaultDialTimeout, st)
		}
		if conn.DefaultDialTimeout != 10*time.Second {
			t.Errorf("DefaultDialTimeout = %v, documented as 10 s", conn.DefaultDialTimeout)
		}
		m.Close()
	})
}

// A dial timeout of zero gives the dial a context without a deadline, not
// one already expired: in a round over several endpoints too.
func TestZeroDialTimeoutGivesTheDialALiveContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		dial := func(ctx context.Context, network, address string) (net.Conn, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if _, ok := ctx.Deadline(); ok {
				return nil, errors.New("a deadline without a dial timeout")
			}
			return f.Dial(ctx, network, address)
		}
		m := conn.New("tcp", "x:1", conn.WithDialer(dial), conn.WithEndpoints("y:1"), conn.WithDialTimeout(0),
			conn.WithLogger(log.NewNopLogger()))
		defer m.Close()
		if m.Take() == nil {
			t.Fatalf("no connection; stats %+v", m.Stats())
		}
	})
}
