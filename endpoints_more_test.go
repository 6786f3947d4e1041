package conn_test

import (
	"context"
	"errors"
	"math"
	"net"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed44b27a20/conn"
)

// A regression test from an adversarial review. What it caught:
// A loss of the standby while a fail-back probe hangs (the primary is
// blackholed, the usual reason to be on the standby) is not answered until
// the probe's dial times out: the Manager's goroutine is stuck in the
// probe round. The Write that found its proven connection dead fails,
// and so does every Write for the rest of the dial timeout, although the
// standby accepts at once.
func TestLossDuringAHangingProbeIsRedialedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const probe = 10 * time.Second
		h := newHosts("a:1", "b:1")
		h.at("a:1").hang = true // blackholed primary
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"),
			conn.WithProbeInterval(probe)) // dial timeout: the default 10 s
		defer m.Close()
		if _, err := m.Write([]byte("1")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(12 * time.Second) // proven; a probe of a:1 is hanging since 9-11 s
		if n := len(h.dialsOf("a:1")); n != 2 {
			t.Fatalf("a:1 dialed %d times, want 2 (first round, one probe)", n)
		}
		h.at("b:1").Conn(0).fail(errBroken) // the standby's connection dies
		start := time.Now()
		_, err := m.Write([]byte("2"))
		if err != nil {
			t.Errorf("Write after the standby's proven connection died, during a probe: %v (after %v); want it redialed at once, as without a probe", err, time.Since(start))
		}
		_, err = m.Write([]byte("3"))
		if err != nil {
			t.Errorf("next Write: %v", err)
		}
		synctest.Wait()
		if d := h.dialsOf("b:1"); len(d) < 2 || d[1].Sub(start) > time.Second {
			t.Errorf("b:1 redialed at %v after the loss, want at once", func() any {
				if len(d) < 2 {
					return "never (yet)"
				}
				return d[1].Sub(start)
			}())
		}
	})
}

// A regression test from an adversarial review. What it caught:
// A primary that accepts and drops (the case edf7164 addresses) is tried
// last in the next round, but each fail-back probe dials it, finds it
// "accepting", and switches to it: each probe interval costs a failed
// Write and a backoff wait with no connection at all, and since attempt
// is never reset by the healthy standby, the backoff grows to the maximum:
// the Manager ends up disconnected most of the time although the standby
// works throughout.
func TestProbesBackOffFromAPrimaryThatDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const probe = 30 * time.Second // the default
		h := newHosts("a:1", "b:1")
		h.at("a:1").prepare = func(c *fakeConn) { c.fail(errBroken) } // accepts, then breaks
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"),
			conn.WithProbeInterval(probe))
		defer m.Close()
		m.Write([]byte("x"))        // fails on the broken primary
		time.Sleep(3 * time.Second) // backoff, then the standby
		var ok, failed int
		for range 10 * 60 * 10 { // 10 minutes, a Write every 100 ms
			if _, err := m.Write([]byte("y")); err != nil {
				failed++
			} else {
				ok++
			}
			time.Sleep(100 * time.Millisecond)
		}
		st := m.Stats()
		t.Logf("ok %d failed %d; a:1 dialed %d times; Stats %+v", ok, failed, len(h.dialsOf("a:1")), st)
		if failed > (ok+failed)/20 {
			t.Errorf("%d of %d Writes failed over 10 minutes with a working standby; want the broken primary's fail-backs to cost a few Writes at most", failed, ok+failed)
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

// A regression test from an adversarial review. What it caught:
// WithProbeInterval(math.MaxInt64), the natural way to say "fail over,
// never fail back" (there is no option to turn probes off): spread10
// overflows half the time and the probe is due at once.
func TestHugeProbeIntervalNeverProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		failedBack := 0
		for range 16 {
			h := newHosts("a:1", "b:1")
			first := true
			dial := func(ctx context.Context, network, address string) (net.Conn, error) {
				if address == "a:1" && first { // a:1 refuses the first dial only
					first = false
					return nil, errRefused
				}
				return h.Dial(ctx, network, address)
			}
			m := conn.New("tcp", "a:1", conn.WithDialer(dial), conn.WithEndpoints("b:1"),
				conn.WithProbeInterval(time.Duration(math.MaxInt64)))
			m.Take()
			time.Sleep(time.Minute)
			if m.Stats().Switches > 0 {
				failedBack++
			}
			m.Close()
		}
		if failedBack > 0 {
			t.Errorf("%d of 16 Managers failed back within a minute with a probe interval of ~292 years", failedBack)
		}
	})
}

// A regression test from an adversarial review. What it caught:
// EndpointsError.Endpoints is the Manager's own priority list (order()
// returns m.sw.list for Priority): a user who sorts or edits the error
// they got from Stats, a hook or Write reorders the Manager's endpoints
// (and races with its goroutine).
func TestEndpointsErrorDoesNotAliasTheManagersList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		h.at("a:1").dialErr = errRefused
		h.at("b:1").dialErr = errRefused
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"))
		defer m.Close()
		synctest.Wait()
		var ee *conn.EndpointsError
		if !errors.As(m.Stats().LastError, &ee) {
			t.Fatalf("LastError %v", m.Stats().LastError)
		}
		ee.Endpoints[0], ee.Endpoints[1] = "zz:1", "zz:1" // e.g. a redacting logger
		h.at("a:1").set(func(f *fakeNet) { f.dialErr = nil })
		time.Sleep(2 * conn.DefaultBackoffMax)
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "a:1" {
			t.Errorf("after editing an error value: Stats %+v, dials of a:1 %d; want the Manager's endpoints untouched", st, len(h.dialsOf("a:1")))
		}
	})
}

// A regression test from an adversarial review. What it caught:
// UDP: the same as TestProbesBackOffFromAPrimaryThatDrops, for
// a primary host whose port is closed (ICMP port unreachable): every probe
// "succeeds" (a datagram dial proves nothing), the Manager fails back, the
// next Write is refused, and the loss is unproven: attempt grows, and so
// does the backoff wait, with no connection at all, up to a minute.
func TestUDPFailbacksToARefusingPrimaryDoNotGrowTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		refused := &net.OpError{Op: "write", Net: "udp", Err: conn.ErrRefused}
		h.at("a:1").prepare = func(c *fakeConn) { c.fail(refused) }
		var evs events
		m := conn.New("udp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"), conn.WithStateHook(evs.hook))
		defer m.Close()
		m.Write([]byte("x"))
		time.Sleep(3 * time.Second)
		var failed, all int
		for range 10 * 60 * 10 {
			if _, err := m.Write([]byte("y")); err != nil {
				failed++
			}
			all++
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		evs.mu.Lock()
		var waits []time.Duration
		for _, ev := range evs.evs {
			if ev.State == conn.Disconnected {
				waits = append(waits, ev.Wait.Round(time.Second))
			}
		}
		evs.mu.Unlock()
		t.Logf("backoff waits after each fail-back: %v", waits)
		if failed > all/20 {
			t.Errorf("%d of %d Writes failed in 10 minutes with a working standby", failed, all)
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

// A regression test from an adversarial review. What it caught:
// Spread's rotation is one counter for the whole process, shared by
// Managers of unrelated endpoint sets. Two services whose Managers are
// made in alternation (a pair per worker: logs and metrics) take every
// other number: the 4-endpoint service only ever starts on two of its
// endpoints, the 2-endpoint one always on the same one.
func TestSpreadRotationIsPerSetOfEndpoints(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := []string{"l1:1", "l2:1", "l3:1", "l4:1"}
		metrics := []string{"m1:1", "m2:1"}
		h := newHosts(append(slices.Clone(logs), metrics...)...)
		count := map[string]int{}
		for range 32 { // 32 workers, each with one Manager per service
			for _, set := range [][]string{logs, metrics} {
				m := conn.New("tcp", set[0], conn.WithDialer(h.Dial), conn.WithEndpoints(set[1:]...), conn.WithPolicy(conn.Spread))
				m.Take()
				count[m.Stats().Endpoint]++
				defer m.Close()
			}
		}
		t.Logf("connections per endpoint: %v", count)
		for _, a := range logs {
			if count[a] != 8 {
				t.Errorf("logs endpoint %s has %d of 32 Managers, want 8 (README: 64 over 4 get 16 each)", a, count[a])
			}
		}
		for _, a := range metrics {
			if count[a] != 16 {
				t.Errorf("metrics endpoint %s has %d of 32 Managers, want 16", a, count[a])
			}
		}
	})
}
