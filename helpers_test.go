package conn_test

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// contextFree adapts a Dialer for WithDialer, ignoring the context: for
// dials that cannot block.
func contextFree(d conn.Dialer) conn.DialContextFunc {
	return func(_ context.Context, network, address string) (net.Conn, error) {
		return d(network, address)
	}
}

// scenario marks a long scenario on real sockets (a second or more): it is
// skipped under -short, or when CONN_SHORT is set, and runs in parallel
// with the other scenarios. They spend their time waiting on timers and
// sockets, each with its own peer, so they share the machine well; the
// tests that keep the cores busy (rotation under load, memory) run alone,
// before them.
func scenario(t *testing.T) {
	t.Helper()
	scenarioAlone(t)
	t.Parallel()
}

// scenarioAlone is scenario for a test that measures the whole process
// (its goroutines) and so must not share it.
func scenarioAlone(t *testing.T) {
	t.Helper()
	if testing.Short() || os.Getenv("CONN_SHORT") != "" {
		t.Skip("a long socket scenario: skipped with -short or CONN_SHORT")
	}
}

// proofMargin is added to a connection's proof age where a test waits for
// it: the Manager measures the dial a little more widely than dialTimer.
const proofMargin = 5 * time.Millisecond

// dialTimer dials TCP and unix sockets as net.Dialer does and records when
// each dial ended and how long it took. A connection proves itself by
// living four times its dial time (at least 10 ms): with these records a
// test can wait exactly that long, or tell whether a peer's close came
// before it, instead of guessing how slow a dial is on a busy machine.
type dialTimer struct {
	mu   sync.Mutex
	ends []time.Time
	took []time.Duration
}

func (d *dialTimer) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	start := time.Now()
	c, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err == nil {
		d.mu.Lock()
		d.ends = append(d.ends, time.Now())
		d.took = append(d.took, time.Since(start))
		d.mu.Unlock()
	}
	return c, err
}

// provenAt returns when the i-th connection dialed has lived its proof age.
func (d *dialTimer) provenAt(i int) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ends[i].Add(max(10*time.Millisecond, 4*d.took[i]) + proofMargin)
}

// dials returns how many dials succeeded.
func (d *dialTimer) dials() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ends)
}

// awaitProof waits until the i-th connection dialed has proven itself, if
// it carried a successful Write.
func (d *dialTimer) awaitProof(i int) {
	time.Sleep(time.Until(d.provenAt(i)))
}

// recv receives from ch within a bound that holds under -race on a busy
// machine.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out")
		panic("unreachable")
	}
}

// events records the Manager's state changes.
type events struct {
	mu  sync.Mutex
	evs []conn.Event
	at  []time.Time
}

func (e *events) hook(ev conn.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.at = append(e.at, time.Now())
	e.mu.Unlock()
}

// find returns when the first event after since that matches was
// delivered; zero if none.
func (e *events) find(since time.Time, match func(conn.Event) bool) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, ev := range e.evs {
		if e.at[i].After(since) && match(ev) {
			return e.at[i]
		}
	}
	return time.Time{}
}
