package conn_test

// Discovery (WithDiscovery): its answers replace the endpoints, its failures
// keep them, and a slow answer holds up neither a round nor a failover.

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

func TestDiscoveryReplacesTheEndpointsAndItsFailuresKeepThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1", "c:1")
		var (
			mu     sync.Mutex
			answer []string
			err    error
			panics bool
		)
		discover := func(context.Context) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			if panics {
				panic("discovery exploded")
			}
			return answer, err
		}
		set := func(a []string, e error, p bool) {
			mu.Lock()
			answer, err, panics = a, e, p
			mu.Unlock()
		}
		var lines syncBuffer
		set(nil, errors.New("registry down"), false)
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithDiscovery(discover),
			conn.WithMaxConnectionAge(10*time.Second), conn.WithLogger(log.NewLogfmtLogger(&lines)))
		defer m.Close()
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "a:1" {
			t.Fatalf("Stats() = %+v: want New's address while discovery fails", st)
		}
		set([]string{"", "b:1", "b:1"}, nil, false)
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "b:1" {
			t.Fatalf("Stats() = %+v: want the rotation to go to discovery's b:1", st)
		}
		set(nil, nil, true)
		time.Sleep(11 * time.Second)
		set([]string{}, nil, false)
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "b:1" || st.Switches != 3 {
			t.Errorf("Stats() = %+v: want b:1 kept through a panic and an empty answer, rotated each time", st)
		}
		log := lines.String()
		for _, want := range []string{"registry down", "discovery panicked: discovery exploded", "no endpoints"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
	})
}

func TestALateDiscoveryAnswerServesTheNextRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		h := newHosts("a:1", "b:1")
		var (
			mu    sync.Mutex
			calls int
		)
		discover := func(ctx context.Context) ([]string, error) {
			mu.Lock()
			calls++
			first := calls == 1
			mu.Unlock()
			if first {
				return []string{"a:1"}, nil
			}
			select { // slower than a round waits
			case <-time.After(400 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return []string{"b:1"}, nil
		}
		m := conn.New("tcp", "", conn.WithDialer(h.Dial), conn.WithDiscovery(discover), conn.WithMaxConnectionAge(age))
		defer m.Close()
		m.Take()
		if st := m.Stats(); st.Endpoint != "a:1" {
			t.Fatalf("Stats() = %+v, want a:1 from the first answer", st)
		}
		// Rotations come every 9 to 11 s (the age spread by 10%), each
		// after a round of up to 250 ms: by 12 s the first has come, by
		// 24 s the second, and the third not before 27 s.
		time.Sleep(age * 12 / 10) // a rotation: its round stops waiting at 250 ms
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "a:1" {
			t.Errorf("Stats() = %+v: the first rotation should not have waited for the slow answer", st)
		}
		time.Sleep(age * 12 / 10) // the next rotation takes the late answer
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "b:1" {
			t.Errorf("Stats() = %+v: want the late answer (b:1) used by the next round", st)
		}
	})
}

// A regression test from an adversarial review. What it caught:
// A discovery that does not answer (the registry is down; discover honours
// its context) sits on the failover path: each round waits for it up to
// the dial timeout before dialing the endpoints it already knows. The Write
// that found its proven primary dead fails, as does every Write until the
// dial timeout passed, although the standby is known and up.
func TestSlowDiscoveryDoesNotHoldUpFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		hang := make(chan struct{})
		answered := false
		discover := func(ctx context.Context) ([]string, error) {
			if !answered {
				answered = true
				return []string{"a:1", "b:1"}, nil
			}
			select { // the registry is down from now on
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-hang:
				return nil, errors.New("unreachable")
			}
		}
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithDiscovery(discover))
		defer m.Close()
		if _, err := m.Write([]byte("1")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // proven
		h.at("a:1").set(func(f *fakeNet) { f.dialErr = errRefused })
		h.at("a:1").Conn(0).fail(errBroken)
		start := time.Now()
		if _, err := m.Write([]byte("2")); err != nil {
			t.Errorf("Write after the primary died: %v after %v; want it on the known standby (README: 'the standby takes over at once')", err, time.Since(start))
		}
		synctest.Wait()
		if d := h.dialsOf("b:1"); len(d) == 0 || d[0].Sub(start) > time.Second {
			t.Errorf("b:1 dialed at %v after the loss", d)
		}
	})
}

// Without a dial timeout (WithDialTimeout(0), no bound) discovery runs
// without one too: its context is not already expired.
func TestDiscoveryWithoutDialTimeoutIsNotCutShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		discover := func(ctx context.Context) ([]string, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if _, ok := ctx.Deadline(); ok {
				return nil, errors.New("discovery given a deadline without a dial timeout")
			}
			return []string{"b:1"}, nil
		}
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithDiscovery(discover), conn.WithDialTimeout(0),
			conn.WithMaxConnectionAge(10*time.Second), conn.WithLogger(log.NewNopLogger()))
		defer m.Close()
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(25 * time.Second)
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "b:1" {
			t.Fatalf("Stats() = %+v: want rotated to discovery's b:1", st)
		}
	})
}

// With a dial timeout, discovery runs within it.
func TestDiscoveryWithinTheDialTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		discover := func(ctx context.Context) ([]string, error) {
			if _, ok := ctx.Deadline(); !ok {
				return nil, errors.New("discovery given no deadline")
			}
			return []string{"b:1"}, nil
		}
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithDiscovery(discover), conn.WithDialTimeout(time.Minute),
			conn.WithMaxConnectionAge(10*time.Second), conn.WithLogger(log.NewNopLogger()))
		defer m.Close()
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(25 * time.Second)
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "b:1" {
			t.Fatalf("Stats() = %+v: want rotated to discovery's b:1", st)
		}
	})
}
