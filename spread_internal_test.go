package conn

import (
	"context"
	"errors"
	"math"
	"net"
	"testing"
	"time"
)

// A regression test from an adversarial review. What it caught:
// WithMaxConnectionAge / WithProbeInterval with a huge value ("never",
// e.g. math.MaxInt64) overflow in spread10 about half the time: the next
// rotation or probe is then due in the past, at once.
func TestSpread10DoesNotOverflow(t *testing.T) {
	for _, d := range []time.Duration{math.MaxInt64, 200 * 365 * 24 * time.Hour, 270 * 365 * 24 * time.Hour} {
		neg := 0
		for range 1000 {
			if spread10(d) <= 0 {
				neg++
			}
		}
		if neg > 0 {
			t.Errorf("spread10(%v) <= 0 in %d of 1000 calls", d, neg)
		}
	}
}

// Under Spread, the endpoints after the first come in an order of the
// Manager's own (its seed's hash of each endpoint), so that the Managers
// that share a first endpoint fail over to different ones.
func TestSpreadFailoverOrderDependsOnTheManager(t *testing.T) {
	seconds := make(map[string]int)
	for range 60 {
		m := New("tcp", "a:1", WithEndpoints("b:1", "c:1", "d:1"), WithPolicy(Spread),
			WithDialer(func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no dialing here") }))
		order := m.order()
		m.Close()
		if len(order) != 4 {
			t.Fatalf("order %v, want the 4 endpoints", order)
		}
		seconds[order[1]]++
	}
	if len(seconds) != 4 {
		t.Fatalf("second endpoints over 60 Managers: %v, want each of the 4 at least once", seconds)
	}
}

// The process-wide rotation that spreads Managers over their first endpoint
// is one per list and discovery function: Managers with the same list but
// another discovery do not take turns with these.
func TestSpreadRotationIsPerDiscovery(t *testing.T) {
	noDial := WithDialer(func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no dialing here") })
	discoverA := func(context.Context) ([]string, error) { return nil, errors.New("a") }
	discoverB := func(context.Context) ([]string, error) { return nil, errors.New("b") }
	pick := func(opts ...Option) uint64 {
		m := New("tcp", "rot-a:1", append([]Option{WithEndpoints("rot-b:1"), WithPolicy(Spread), noDial}, opts...)...)
		defer m.Close()
		return m.sw.pick
	}
	a := pick(WithDiscovery(discoverA))
	pick(WithDiscovery(discoverB))
	pick()
	if next := pick(WithDiscovery(discoverA)); next != a+1 {
		t.Fatalf("the next Manager with the same discovery has number %d, want %d: another discovery, or none, took a turn", next, a+1)
	}
}
