package conn_test

// Helpers of the scenarios with several endpoints on real loopback sockets
// (issue 13): numbered writers, and a ledger of what became of their lines.

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// A line is one numbered Write and what it returned.
type line struct {
	ok bool
	at time.Time
}

// numbered runs writers goroutines that each write "w<base+i> <seq>\n"
// through write, pausing pause between lines (none: flat out), until stop
// is closed. It returns a function that waits for them and returns what
// each Write returned, by writer i and sequence.
func numbered(base, writers int, pause time.Duration, write func([]byte) (int, error), stop <-chan struct{}) func() [][]line {
	var (
		mu      sync.Mutex
		results = make([][]line, writers)
		wg      sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			buf := make([]byte, 0, 32)
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				buf = fmt.Appendf(buf[:0], "w%d %d\n", base+w, seq)
				_, err := write(buf)
				mu.Lock()
				results[w] = append(results[w], line{err == nil, time.Now()})
				mu.Unlock()
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		})
	}
	return func() [][]line {
		wg.Wait()
		return results
	}
}

// ledger is what the sinks received, checked against what was written.
type ledger struct {
	acked, failed, lost, failedButReceived int
	lostAfter                              map[time.Time]int // acked lines lost, by when they were acked
}

// account checks every written line against the lines the sinks received:
// none twice, none that nobody wrote (a torn line), and counts the
// acknowledged lines lost. Lines named in extra ("end") may be received
// once without being written.
func account(t *testing.T, results [][]line, received []string, extra ...string) ledger {
	t.Helper()
	count := map[string]int{}
	for _, l := range received {
		count[l]++
	}
	var lg ledger
	var lostAt []time.Time
	for w, rs := range results {
		for seq, r := range rs {
			key := fmt.Sprintf("w%d %d", w, seq)
			n := count[key]
			switch {
			case r.ok && n == 0:
				lg.lost++
				lg.acked++
				lostAt = append(lostAt, r.at)
			case r.ok:
				lg.acked++
			case n > 0:
				lg.failedButReceived++
				lg.failed++
			default:
				lg.failed++
			}
			if n > 1 {
				t.Errorf("%q received %d times", key, n)
			}
			delete(count, key)
		}
	}
	for _, e := range extra {
		delete(count, e)
	}
	for l, n := range count {
		t.Errorf("received %d× a line nobody wrote (torn?): %q", n, l)
	}
	lg.lostAfter = map[time.Time]int{}
	for _, at := range lostAt {
		lg.lostAfter[at]++
	}
	return lg
}

// lostSince counts the acked lines lost that were acked after t.
func (lg ledger) lostSince(t time.Time) int {
	n := 0
	for at, k := range lg.lostAfter {
		if at.After(t) {
			n += k
		}
	}
	return n
}
