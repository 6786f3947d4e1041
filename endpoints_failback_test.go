package conn_test

// Priority (the default policy): failover down the list at once, and fail-back
// to a better endpoint after a probe (WithProbeInterval), which backs off.

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

func TestPriorityMovesDownAtOnceAndBackAfterAProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const probe = 10 * time.Second
		h := newHosts("a:1", "b:1")
		var evs events
		var lines syncBuffer
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"),
			conn.WithProbeInterval(probe), conn.WithStateHook(evs.hook), conn.WithLogger(log.NewLogfmtLogger(&lines)))
		defer m.Close()
		if _, err := m.Write([]byte("1")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // proven
		h.at("a:1").set(func(f *fakeNet) { f.dialErr = errRefused })
		h.at("a:1").Conn(0).fail(errBroken)
		lost := time.Now()
		if _, err := m.Write([]byte("2")); err != nil {
			t.Fatalf("Write after a:1 failed: %v, want it redialed and written on b:1", err)
		}
		if time.Since(lost) != 0 || h.at("b:1").Conn(0).data() != "2" {
			t.Errorf("the failover took %v and b:1 has %q: want at once", time.Since(lost), h.at("b:1").Conn(0).data())
		}
		// a:1 stays down for a first probe, then comes back.
		time.Sleep(probe * 11 / 10)
		if n := len(h.dialsOf("a:1")); n != 3 {
			t.Fatalf("a:1 dialed %d times, want 3: the first, the failover round, one probe", n)
		}
		h.at("a:1").set(func(f *fakeNet) { f.dialErr = nil })
		up := time.Now()
		synctest.Wait()
		for h.at("a:1").Dials() < 4 {
			time.Sleep(time.Millisecond)
			synctest.Wait()
		}
		if took := time.Since(up); took < probe*9/10-probe*2/10 || took > probe*11/10 {
			t.Errorf("the next probe came %v after a:1 was up, want within one interval (±10%%) of the last", took)
		}
		if _, err := m.Write([]byte("3")); err != nil {
			t.Fatal(err)
		}
		if got := h.at("a:1").Conn(1).data(); got != "3" {
			t.Errorf("after the fail-back a:1 received %q, want %q", got, "3")
		}
		synctest.Wait()
		if !h.at("b:1").Conn(0).closed.Load() {
			t.Error("b:1's connection was not closed after the fail-back")
		}
		if st := m.Stats(); st.Switches != 1 || st.Endpoint != "a:1" || st.Lost != 1 {
			t.Errorf("Stats() = %+v, want one switch, one loss, on a:1", st)
		}
		if evs.find(up, func(ev conn.Event) bool { return ev.Switch == conn.Failback && ev.Endpoint == "a:1" }).IsZero() {
			t.Error("no Failback event")
		}
		synctest.Wait()
		if !strings.Contains(lines.String(), `msg=switched network=tcp address=a:1 switch=failback`) {
			t.Errorf("log lacks the switch:\n%s", lines.String())
		}
	})
}

// A fail-back closes the standby's connection only once the Write under
// way on it has returned: with the standby given by WithEndpoints, and by
// discovery alone (both must count Writes).
func TestFailbackClosesTheStandbyOnlyAfterTheWritesUnderWay(t *testing.T) {
	discover := func(context.Context) ([]string, error) { return []string{"a:1", "b:1"}, nil }
	for name, c := range map[string]struct {
		address string
		opt     conn.Option
	}{
		"WithEndpoints": {"a:1", conn.WithEndpoints("b:1")},
		"WithDiscovery": {"", conn.WithDiscovery(discover)},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const probe = 10 * time.Second
				h := newHosts("a:1", "b:1")
				h.at("a:1").dialErr = errRefused
				m := conn.New("tcp", c.address, conn.WithDialer(h.Dial), c.opt,
					conn.WithProbeInterval(probe), conn.WithWriteTimeout(0))
				defer m.Close()
				if _, err := m.Write([]byte("a")); err != nil {
					t.Fatal(err)
				}
				standby := h.at("b:1").Conn(0)
				gate := make(chan struct{})
				standby.gate = gate
				blocked := make(chan error)
				go func() {
					_, err := m.Write([]byte("b"))
					blocked <- err
				}()
				h.at("a:1").set(func(f *fakeNet) { f.dialErr = nil })
				time.Sleep(probe * 11 / 10)
				synctest.Wait()
				if st := m.Stats(); st.Endpoint != "a:1" || st.Switches != 1 {
					t.Fatalf("Stats() = %+v, want failed back to a:1", st)
				}
				if standby.closed.Load() {
					t.Fatal("the standby's connection was closed while a Write was under way on it")
				}
				close(gate)
				if err := <-blocked; err != nil {
					t.Errorf("the Write under way at the fail-back: %v", err)
				}
				synctest.Wait()
				if !standby.closed.Load() || standby.data() != "ab" {
					t.Errorf("standby: closed %v, data %q: want closed once its Write returned, with a and b", standby.closed.Load(), standby.data())
				}
			})
		})
	}
}

func TestFailbacksToAnEndpointThatDropsAreProbedLessOftenEachTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const probe = 10 * time.Second
		h := newHosts("a:1", "b:1")
		h.at("a:1").dialErr = errRefused
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"), conn.WithProbeInterval(probe))
		defer m.Close()
		m.Take()
		// a:1 comes back broken: it accepts, and every connection fails.
		h.at("a:1").set(func(f *fakeNet) {
			f.dialErr = nil
			f.prepare = func(c *fakeConn) { c.fail(errBroken) }
		})
		for range 600 { // ten minutes, a Write a second
			m.Write([]byte("x"))
			time.Sleep(time.Second)
		}
		// Probing every 10 s would fail back ~60 times; doubling the
		// interval at each fail-back that drops leaves ~6.
		if n := h.at("a:1").Dials(); n > 10 || n < 3 {
			t.Errorf("a:1 dialed %d times in ten minutes, want the probe interval doubled at each failed fail-back (3-10)", n)
		}
		// The last fail-back may have come after the last Write (the probe
		// intervals are jittered): one more Write finds it broken.
		m.Write([]byte("x"))
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "b:1" {
			t.Errorf("Stats() = %+v, want on b:1", st)
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

// With discovery, a Manager that starts with one endpoint known (New's,
// discovery failing) still probes: the endpoints discovery finds above it
// later are failed back to.
func TestDiscoveryAloneProbesFromTheOnlyEndpointKnown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const probe = 10 * time.Second
		h := newHosts("a:1", "b:1")
		var (
			mu     sync.Mutex
			answer []string
			err    = errors.New("registry down")
		)
		discover := func(context.Context) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			return answer, err
		}
		m := conn.New("tcp", "b:1", conn.WithDialer(h.Dial), conn.WithDiscovery(discover), conn.WithProbeInterval(probe))
		defer m.Close()
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "b:1" {
			t.Fatalf("Stats() = %+v: want New's b:1 while discovery fails", st)
		}
		mu.Lock()
		answer, err = []string{"a:1", "b:1"}, nil
		mu.Unlock()
		time.Sleep(3 * probe)
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "a:1" {
			t.Fatalf("Stats() = %+v: want failed back to a:1, found above b:1 by discovery", st)
		}
	})
}

// A Manager on the first endpoint has nothing above it: its probes dial
// nothing, neither itself nor the endpoints below.
func TestPriorityOnTheFirstEndpointProbesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const probe = 10 * time.Second
		h := newHosts("a:1", "b:1")
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"), conn.WithProbeInterval(probe))
		defer m.Close()
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * probe)
		synctest.Wait()
		if a, b := len(h.dialsOf("a:1")), len(h.dialsOf("b:1")); a != 1 || b != 0 {
			t.Fatalf("on the first endpoint for 5 probe intervals: a:1 dialed %d times, b:1 %d; want 1 and 0", a, b)
		}
		if st := m.Stats(); st.Endpoint != "a:1" || st.Switches != 0 {
			t.Fatalf("Stats() = %+v", st)
		}
	})
}
