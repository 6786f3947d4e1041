package conn_test

// Spread (WithPolicy): Managers of the same endpoints take their first one in
// turn, and fail over along orders of their own.

import (
	"slices"
	"testing"
	"testing/synctest"

	"github.com/seed44b27a20/conn"
)

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
