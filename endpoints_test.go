package conn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

// hosts is an in-memory network of several endpoints, each a fakeNet, that
// records when each was dialed.
type hosts struct {
	mu    sync.Mutex
	nets  map[string]*fakeNet
	dials []dialed
}

type dialed struct {
	address string
	at      time.Time
}

func newHosts(addrs ...string) *hosts {
	h := &hosts{nets: map[string]*fakeNet{}}
	for _, a := range addrs {
		h.nets[a] = &fakeNet{}
	}
	return h
}

func (h *hosts) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	h.mu.Lock()
	f := h.nets[address]
	h.dials = append(h.dials, dialed{address, time.Now()})
	h.mu.Unlock()
	if f == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("no such fake host " + address)}
	}
	return f.Dial(ctx, network, address)
}

func (h *hosts) at(address string) *fakeNet { return h.nets[address] }

// dialsOf returns when address was dialed.
func (h *hosts) dialsOf(address string) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ts []time.Time
	for _, d := range h.dials {
		if d.address == address {
			ts = append(ts, d.at)
		}
	}
	return ts
}

var errRefused = errors.New("connection refused (fake)")

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

func TestRotationClosesTheOldConnectionOnlyAfterTheWritesUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		f := &fakeNet{}
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithMaxConnectionAge(age), conn.WithWriteTimeout(0))
		defer m.Close()
		if _, err := m.Write([]byte("a")); err != nil {
			t.Fatal(err)
		}
		old := f.Conn(0)
		gate := make(chan struct{})
		old.gate = gate // the next Write on it blocks
		blocked := make(chan error)
		go func() {
			_, err := m.Write([]byte("b"))
			blocked <- err
		}()
		time.Sleep(age * 11 / 10)
		synctest.Wait()
		if f.Dials() != 2 {
			t.Fatalf("%d dials after the maximum age, want the rotation's", f.Dials())
		}
		if _, err := m.Write([]byte("c")); err != nil {
			t.Fatalf("Write after the rotation: %v", err)
		}
		if got := f.Conn(1).data(); got != "c" {
			t.Errorf("the new connection received %q, want the Write after the rotation", got)
		}
		if old.closed.Load() {
			t.Fatal("the old connection was closed while a Write was under way on it")
		}
		close(gate)
		if err := <-blocked; err != nil {
			t.Errorf("the Write under way at the rotation: %v", err)
		}
		synctest.Wait()
		if !old.closed.Load() || old.data() != "ab" {
			t.Errorf("old connection: closed %v, data %q: want closed once its Write returned, with a and b", old.closed.Load(), old.data())
		}
		if st := m.Stats(); st.Switches != 1 || st.Lost != 0 {
			t.Errorf("Stats() = %+v: want one switch and no loss", st)
		}
	})
}

func TestFailedRotationKeepsTheConnectionAndRetriesAfterTheAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		f := &fakeNet{}
		var lines syncBuffer
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithMaxConnectionAge(age), conn.WithLogger(log.NewLogfmtLogger(&lines)))
		defer m.Close()
		if _, err := m.Write([]byte("a")); err != nil {
			t.Fatal(err)
		}
		f.set(func(f *fakeNet) { f.dialErr = errRefused })
		defer func() {
			if !strings.Contains(lines.String(), `msg="switch failed; keeping the connection" switch=rotation`) {
				t.Errorf("log lacks the failed rotation:\n%s", lines.String())
			}
		}()
		time.Sleep(age * 11 / 10)
		if f.Dials() != 2 {
			t.Fatalf("%d dials, want the failed rotation's", f.Dials())
		}
		if _, err := m.Write([]byte("b")); err != nil || f.Conn(0).data() != "ab" {
			t.Errorf("Write after a failed rotation: %v, data %q: want it on the old connection", err, f.Conn(0).data())
		}
		f.set(func(f *fakeNet) { f.dialErr = nil })
		time.Sleep(age * 11 / 10)
		synctest.Wait()
		if st := m.Stats(); f.Dials() != 3 || st.Switches != 1 || st.DialFailures != 1 {
			t.Errorf("%d dials, Stats() = %+v: want the rotation retried after another age", f.Dials(), st)
		}
	})
}

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

func TestSpreadManagersTakeTheirFirstEndpointInTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		addrs := []string{"a:1", "b:1", "c:1", "d:1"}
		h := newHosts(addrs...)
		count := map[string]int{}
		for range 3 * len(addrs) {
			m := conn.New("tcp", addrs[0], conn.WithDialer(h.Dial), conn.WithEndpoints(addrs[1:]...), conn.WithPolicy(conn.Spread))
			m.Take()
			count[m.Stats().Endpoint]++
			m.Close()
		}
		for _, a := range addrs {
			if count[a] != 3 {
				t.Errorf("first endpoints %v, want 3 each", count)
				break
			}
		}
	})
}

func TestSpreadFailsOverAlongItsOwnOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		addrs := []string{"a:1", "b:1", "c:1", "d:1"}
		h := newHosts(addrs...)
		// Managers whose first endpoint is down scatter over the others.
		h.at("a:1").dialErr = errRefused
		second := map[string]int{}
		for range 64 {
			m := conn.New("tcp", addrs[0], conn.WithDialer(h.Dial), conn.WithEndpoints(addrs[1:]...), conn.WithPolicy(conn.Spread))
			m.Take()
			second[m.Stats().Endpoint]++
			m.Close()
		}
		if len(second) != 3 || second["a:1"] != 0 {
			t.Errorf("endpoints %v: want b, c and d all used", second)
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
		time.Sleep(age * 11 / 10) // a rotation: its round stops waiting at 250 ms
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "a:1" {
			t.Errorf("Stats() = %+v: the first rotation should not have waited for the slow answer", st)
		}
		time.Sleep(age * 11 / 10) // the next rotation takes the late answer
		synctest.Wait()
		if st := m.Stats(); st.Endpoint != "b:1" {
			t.Errorf("Stats() = %+v: want the late answer (b:1) used by the next round", st)
		}
	})
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

func TestASwitchKeepsStatsSince(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		f := &fakeNet{}
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithMaxConnectionAge(age))
		defer m.Close()
		m.Take()
		since := m.Stats().Since
		time.Sleep(age * 11 / 10)
		synctest.Wait()
		if st := m.Stats(); st.Switches != 1 || !st.Since.Equal(since) {
			t.Errorf("Stats() = %+v after a rotation, want Since unchanged (%v): the state stayed Connected", st, since)
		}
		f.Conn(1).fail(errBroken)
		m.Write([]byte("x"))
		synctest.Wait()
		if st := m.Stats(); st.Since.Equal(since) {
			t.Errorf("Stats() = %+v after a loss, want Since moved", st)
		}
	})
}

func TestRotationWaitsForTheBatchUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		f := &fakeNet{}
		m := conn.New("tcp", "a:1", conn.WithDialer(f.Dial), conn.WithMaxConnectionAge(age), conn.WithWriteTimeout(0))
		defer m.Close()
		m.Take()
		old := f.Conn(0)
		gate := make(chan struct{})
		old.gate = gate // the first batch blocks
		w := conn.NewBatchWriter(m)
		defer w.Close()
		fmt.Fprintln(w, "a")
		synctest.Wait()
		time.Sleep(age * 11 / 10)
		synctest.Wait()
		if m.Stats().Switches != 1 || old.closed.Load() {
			t.Fatalf("Stats() = %+v, old closed %v: want rotated, the old connection open while a batch is under way on it", m.Stats(), old.closed.Load())
		}
		close(gate)
		fmt.Fprintln(w, "b")
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !old.closed.Load() || old.data() != "a\n" || f.Conn(1).data() != "b\n" {
			t.Errorf("old: closed %v, %q; new: %q: want the batch whole on the old one, then closed, and the next on the new one", old.closed.Load(), old.data(), f.Conn(1).data())
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
