package conn_test

// Discovery on real UDP sockets: datagrams follow it without waiting, also
// while it hangs.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

func TestScenarioUDPFollowsDiscoveryWithoutWaiting(t *testing.T) {
	scenario(t)
	const interval = 200 * time.Millisecond
	a, b := testnet.NewUDPSink(t), testnet.NewUDPSink(t)
	var (
		list    atomic.Pointer[string]
		slow    atomic.Bool
		release = make(chan struct{})
	)
	addrA, addrB := a.Addr(), b.Addr()
	list.Store(&addrA)
	discover := func(ctx context.Context) ([]string, error) {
		if slow.Load() {
			select { // a discovery service that hangs
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return []string{*list.Load()}, nil
	}
	var evs events
	m := conn.New("udp", "", conn.WithDiscovery(discover), conn.WithMaxConnectionAge(interval), conn.WithStateHook(evs.hook))
	defer m.Close()

	var slowest atomic.Int64 // the longest Write, ns
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			start := time.Now()
			m.Write(fmt.Appendf(nil, "d%d", i))
			if d := int64(time.Since(start)); d > slowest.Load() {
				slowest.Store(d)
			}
		}
	})
	defer func() { close(done); wg.Wait() }()
	if !a.WaitCount(10, 10*time.Second) {
		t.Fatal("no datagrams at A")
	}
	moved := time.Now()
	list.Store(&addrB)
	if !b.WaitCount(1, 10*time.Second) {
		t.Fatal("no datagrams at B after discovery moved to it")
	}
	took := time.Since(moved)
	if bound := interval*11/10 + 500*time.Millisecond; took > bound {
		t.Errorf("datagrams reached B %v after the move, want within the interval (%v) and a margin: %v", took, interval, bound)
	}
	if evs.find(moved, func(ev conn.Event) bool { return ev.Switch == conn.Move && ev.Endpoint == b.Addr() }).IsZero() {
		t.Error("no Move event to B")
	}

	// Discovery now hangs for seconds: Writes go on, on B, without waiting.
	slowest.Store(0)
	slow.Store(true)
	atB := b.Count()
	time.Sleep(3 * interval)
	if b.Count() < atB+50 {
		t.Errorf("only %d datagrams at B while discovery hung", b.Count()-atB)
	}
	if d := time.Duration(slowest.Load()); d > 100*time.Millisecond {
		t.Errorf("a Write took %v while discovery hung: Write must never wait for it", d)
	}
	close(release)
	t.Logf("datagrams reached B %v after discovery moved; the slowest Write while discovery hung took %v", took.Round(time.Millisecond), time.Duration(slowest.Load()))
}
