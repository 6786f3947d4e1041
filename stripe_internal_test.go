package conn

import (
	"runtime"
	"sync"
	"testing"
)

// A link's count of Writes under way has four stripes per P, a power of
// two from 4 to 64.
func TestInflightStripesFollowTheProcessors(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct{ procs, want int }{{1, 4}, {2, 8}, {3, 16}, {16, 64}, {100, 64}} {
		runtime.GOMAXPROCS(c.procs)
		if got := inflightStripes(); got != c.want {
			t.Errorf("GOMAXPROCS %d: %d stripes, want %d", c.procs, got, c.want)
		}
	}
}

// Goroutines pick stripes apart: 16 at the same depth of their stacks
// land in more than a few of the 64.
func TestGoroutinesPickDifferentStripes(t *testing.T) {
	const n = 16
	picks := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start // all alive at once: no stack reused
			picks[i] = stripeOf() & (maxStripes - 1)
		})
	}
	close(start)
	wg.Wait()
	seen := map[int]bool{}
	for _, p := range picks {
		seen[p] = true
	}
	if len(seen) < n/4 {
		t.Errorf("%d goroutines picked %d stripes of %d: %v", n, len(seen), maxStripes, picks)
	}
}

// A link being switched out is drained once the last Write under way has
// left, whatever stripes they counted in; a Write entering after the
// drain began counts nothing and is turned away.
func TestLinkDrainsWhenTheLastWriteInAnyStripeLeaves(t *testing.T) {
	l := &link{counted: true, inflight: make([]inflightStripe, 8)}
	a, b := &l.inflight[1], &l.inflight[6]
	a.n.Add(1) // as enter does, in two stripes
	b.n.Add(1)
	l.drain()
	if l.enter() != nil {
		t.Fatal("a Write entered a link being switched out")
	}
	closed := func() bool {
		select {
		case <-l.drained:
			return true
		default:
			return false
		}
	}
	l.leave(a)
	if closed() {
		t.Fatal("drained while a Write in another stripe is under way")
	}
	l.leave(b)
	if !closed() {
		t.Fatal("not drained once the last Write left")
	}
	if !l.idle() {
		t.Error("a stripe still counts a Write")
	}
	idle := &link{counted: true, inflight: make([]inflightStripe, 4)}
	idle.drain()
	select {
	case <-idle.drained:
	default:
		t.Error("a link with no Write under way was not drained at once")
	}
}
