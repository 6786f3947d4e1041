package conn_test

// A round of dials over several endpoints (WithEndpoints): the stagger, the
// order after unproven losses, the backoff and the EndpointsError; the options.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

func TestStaggeredDialStartsTheNextEndpointAfterTheStagger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1", "c:1")
		h.at("a:1").hang = true
		h.at("b:1").hang = true
		start := time.Now()
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1", "c:1"))
		defer m.Close()
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if took := time.Since(start); took != 2*conn.DefaultDialStagger {
			t.Errorf("first Write after %v, want two staggers (%v)", took, 2*conn.DefaultDialStagger)
		}
		for i, a := range []string{"a:1", "b:1", "c:1"} {
			if d := h.dialsOf(a); len(d) != 1 || d[0].Sub(start) != time.Duration(i)*conn.DefaultDialStagger {
				t.Errorf("%s dialed at %v, want once at %v", a, d, time.Duration(i)*conn.DefaultDialStagger)
			}
		}
		if st := m.Stats(); st.Endpoint != "c:1" || st.Dials != 1 || st.DialFailures != 0 {
			t.Errorf("Stats() = %+v, want one round, connected to c:1", st)
		}
		// The losers' dials were cancelled: no goroutine is left (goleak
		// checks at the end) and nothing connected to them.
		synctest.Wait()
		if h.at("a:1").Dials() != 1 || len(h.at("a:1").conns) != 0 {
			t.Error("a:1 connected")
		}
	})
}

func TestFailedDialStartsTheNextEndpointAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		h.at("a:1").dialErr = errRefused
		start := time.Now()
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"))
		defer m.Close()
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if d := h.dialsOf("b:1"); len(d) != 1 || d[0] != start {
			t.Errorf("b:1 dialed at %v, want at once", d)
		}
		if got := h.at("b:1").Conn(0).data(); got != "x" {
			t.Errorf("b:1 received %q", got)
		}
	})
}

func TestStaggerZeroDialsOneEndpointAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		h.at("a:1").hang = true
		start := time.Now()
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"),
			conn.WithDialStagger(0), conn.WithDialTimeout(3*time.Second))
		defer m.Close()
		time.Sleep(5 * time.Second)
		if d := h.dialsOf("b:1"); len(d) != 1 || d[0].Sub(start) != 3*time.Second {
			t.Errorf("b:1 dialed at %v, want once, when a:1's dial timed out (3s)", d)
		}
	})
}

func TestAFailureStartsTheLastEndpointWhileTheStaggerIsPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1", "c:1")
		h.at("a:1").hang = true
		h.at("b:1").set(func(f *fakeNet) { f.delay, f.dialErr = 100*time.Millisecond, errRefused })
		h.at("c:1").hang = true
		start := time.Now()
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1", "c:1"),
			conn.WithDialTimeout(2*time.Second), conn.WithBackoff(time.Hour, time.Hour))
		defer m.Close()
		time.Sleep(3 * time.Second) // past the stagger's timer, which was armed for c:1
		synctest.Wait()
		if d := h.dialsOf("c:1"); len(d) != 1 || d[0].Sub(start) != conn.DefaultDialStagger+100*time.Millisecond {
			t.Errorf("c:1 dialed at %v, want once, when b:1 failed", d)
		}
		var ee *conn.EndpointsError
		if st := m.Stats(); !errors.As(st.LastError, &ee) || len(ee.Errs) != 3 || st.Dials != 1 {
			t.Errorf("Stats() = %+v: want one failed round over the three", st)
		}
	})
}

func TestFailedRoundBacksOffOnceAndNamesEachEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		h.at("a:1").dialErr = errRefused
		h.at("b:1").dialErr = &net.AddrError{Err: "missing port in address", Addr: "b"}
		after := &afterRecorder{}
		var evs events
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"),
			conn.WithAfterFunc(after.After), conn.WithStateHook(evs.hook))
		defer m.Close()
		synctest.Wait()
		if w := after.Waits(); len(w) != 1 {
			t.Fatalf("waits %v after one round, want one backoff wait", w)
		}
		_, err := m.Write([]byte("x"))
		var ee *conn.EndpointsError
		if !errors.As(err, new(*conn.UnavailableError)) || !errors.As(m.Stats().LastError, &ee) {
			t.Fatalf("Write: %v; LastError %v: want unavailable, and an EndpointsError", err, m.Stats().LastError)
		}
		if !slices.Equal(ee.Endpoints, []string{"a:1", "b:1"}) || !errors.Is(ee, errRefused) || len(ee.Errs) != 2 {
			t.Errorf("EndpointsError %+v: want both endpoints and their errors", ee)
		}
		if want := "all 2 endpoints failed: a:1: connection refused (fake); b:1: address b: missing port in address"; ee.Error() != want {
			t.Errorf("Error() = %q, want %q", ee.Error(), want)
		}
		if conn.IsPermanent(err) {
			t.Error("IsPermanent: a refused endpoint may accept later")
		}
		if !conn.IsPermanent(&conn.EndpointsError{Endpoints: []string{"b:1", "b:1"}, Errs: []error{ee.Errs[1], ee.Errs[1]}}) {
			t.Error("IsPermanent: false for a round in which every failure is permanent")
		}
		if conn.IsPermanent(&conn.EndpointsError{}) {
			t.Error("IsPermanent: true for an empty round")
		}
		evs.mu.Lock()
		defer evs.mu.Unlock()
		if len(evs.evs) == 0 || evs.evs[0].State != conn.Disconnected || evs.evs[0].Endpoint != "" {
			t.Errorf("events %+v, want a Disconnected event with no single endpoint", evs.evs)
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

func TestPanickingDialerInARound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("b:1")
		dial := func(ctx context.Context, network, address string) (net.Conn, error) {
			if address == "a:1" {
				panic("boom")
			}
			return h.Dial(ctx, network, address)
		}
		m := conn.New("tcp", "a:1", conn.WithDialer(dial), conn.WithEndpoints("b:1"))
		defer m.Close()
		if _, err := m.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if st := m.Stats(); st.Endpoint != "b:1" {
			t.Errorf("Stats %+v", st)
		}
	})
}

func TestAnEndpointThatDropsUnprovenConnectionsIsTriedLast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1")
		h.at("a:1").prepare = func(c *fakeConn) { c.fail(errBroken) } // accepts, then breaks
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1"))
		defer m.Close()
		if _, err := m.Write([]byte("x")); !errors.Is(err, errBroken) {
			t.Fatalf("Write on the broken primary: %v, want its error", err)
		}
		time.Sleep(2 * conn.DefaultBackoffBase) // the backoff after an unproven loss
		synctest.Wait()
		if _, err := m.Write([]byte("y")); err != nil {
			t.Fatalf("Write after the backoff: %v, want it on the standby", err)
		}
		if n := len(h.dialsOf("a:1")); n != 1 || m.Stats().Endpoint != "b:1" {
			t.Errorf("a:1 dialed %d times, endpoint %q: want the standby dialed first after a:1 dropped an unproven connection", n, m.Stats().Endpoint)
		}
	})
}

func TestAnUnprovenLossMovesToAnUntriedEndpointWithoutBackingOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts("a:1", "b:1", "c:1")
		broken := func(c *fakeConn) { c.fail(errBroken) } // accepts, then breaks
		h.at("a:1").prepare = broken
		h.at("b:1").prepare = broken
		after := &afterRecorder{}
		m := conn.New("tcp", "a:1", conn.WithDialer(h.Dial), conn.WithEndpoints("b:1", "c:1"), conn.WithAfterFunc(after.After))
		defer m.Close()
		start := time.Now()
		for _, e := range []string{"a:1", "b:1"} {
			if _, err := m.Write([]byte("x")); !errors.Is(err, errBroken) {
				t.Fatalf("Write on %s: %v, want its error", e, err)
			}
			synctest.Wait()
		}
		if _, err := m.Write([]byte("y")); err != nil || time.Since(start) != 0 {
			t.Fatalf("Write after two broken endpoints: %v after %v, want it on c:1 at once", err, time.Since(start))
		}
		if w := after.Waits(); len(w) != 0 || m.Stats().Endpoint != "c:1" {
			t.Errorf("backoff waits %v, endpoint %q: want c:1 without backing off", w, m.Stats().Endpoint)
		}
		// Once every endpoint has dropped a connection, the Manager backs
		// off: no tight loop.
		h.at("c:1").Conn(0).fail(errBroken)
		m.Write([]byte("z"))
		synctest.Wait()
		if w := after.Waits(); len(w) != 1 || w[0] < conn.DefaultBackoffBase/2 {
			t.Errorf("backoff waits %v after all three dropped a connection, want one first wait", w)
		}
	})
}

func TestRepeatedUnprovenLossesBackOffLongerEachTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{prepare: func(c *fakeConn) { c.fail(errBroken) }} // accepts, then breaks
		after := &afterRecorder{}
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithAfterFunc(after.After))
		defer m.Close()
		m.Take()
		for i := range 3 {
			m.Write([]byte("x"))
			synctest.Wait()
			w := after.Waits()
			if len(w) != i+1 {
				t.Fatalf("waits %v after %d unproven losses", w, i+1)
			}
			time.Sleep(w[i])
			synctest.Wait()
		}
		// Nominal 1 s, 2 s, 4 s, each ±50%: the third is at least 2 s.
		if w := after.Waits(); w[2] < 2*conn.DefaultBackoffBase {
			t.Errorf("waits %v: want them to grow with each unproven loss", w)
		}
	})
}

func TestInvalidEndpointOptionsAreLoggedAndIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var lines syncBuffer
		f := &fakeNet{}
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithLogger(log.NewLogfmtLogger(&lines)),
			conn.WithEndpoints("", "a:1"), conn.WithPolicy(conn.Policy(7)), conn.WithProbeInterval(0),
			conn.WithDialStagger(-time.Second), conn.WithMaxConnectionAge(-time.Second), conn.WithDiscovery(nil))
		m.Take()
		m.Close()
		for _, want := range []string{"empty endpoint ignored", "repeated endpoint ignored", "unknown policy Policy(7) ignored",
			"non-positive probe interval 0s ignored", "negative dial stagger -1s ignored", "negative maximum connection age -1s ignored"} {
			if !strings.Contains(lines.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, lines.String())
			}
		}
		if f.Dials() != 1 {
			t.Errorf("%d dials, want 1: one endpoint, no rotation", f.Dials())
		}
	})
}

func TestValidEndpointOptionsLogNoProblem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var lines syncBuffer
		h := newHosts("b:1")
		discover := func(context.Context) ([]string, error) { return []string{"b:1"}, nil }
		m := conn.New("tcp", "", conn.WithDialer(h.Dial), conn.WithLogger(log.NewLogfmtLogger(&lines)),
			conn.WithEndpoints("b:1"), conn.WithMaxConnectionAge(0), conn.WithDialStagger(0), conn.WithDiscovery(discover))
		m.Take()
		m.Close()
		if strings.Contains(lines.String(), "invalid option") {
			t.Errorf("valid options logged as invalid:\n%s", lines.String())
		}
	})
}

func TestPolicyAndSwitchNames(t *testing.T) {
	for v, want := range map[fmt.Stringer]string{
		conn.Priority: "priority", conn.Spread: "spread", conn.Policy(9): "Policy(9)",
		conn.NoSwitch: "none", conn.Rotation: "rotation", conn.Failback: "failback", conn.Move: "move", conn.Switch(9): "Switch(9)",
	} {
		if v.String() != want {
			t.Errorf("%#v.String() = %q, want %q", v, v.String(), want)
		}
	}
}
