//go:build unix

package conn_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// A peer that closes every connection left idle for a while (HAProxy's
// timeout client, nginx stream, a cloud load balancer) is the commonest
// peer there is. Writers that arrive together at a steady cadence slower
// than its timeout all get through, through a Manager or a BatchWriter:
// no error, no loss, no backoff wait. That includes the connection dialed
// by New and each one dialed after a loss, which the peer closes before
// any Write reaches it: the peer held it open past its proof age, so it
// works, and its loss is redialed at once.
func TestIdleClosingPeerGetsEveryWriteOfWritersArrivingTogether(t *testing.T) {
	scenarioAlone(t) // its verdict depends on how long dials take
	cases := []struct{ idle, pause time.Duration }{
		{20 * time.Millisecond, 45 * time.Millisecond},
		{30 * time.Millisecond, 70 * time.Millisecond},
		{50 * time.Millisecond, 150 * time.Millisecond},
		{60 * time.Millisecond, 100 * time.Millisecond},
	}
	// The cases wait on timers and sockets, hardly computing: all of them
	// run at once, whatever -parallel says.
	// Their starts are staggered, so that their first dials do not all
	// land together.
	var wg sync.WaitGroup
	var all, judged atomic.Int64
	start := 0
	for _, lc := range livenessChecks() {
		for _, tc := range cases {
			for _, batch := range []bool{false, true} {
				through := "Manager"
				if batch {
					through = "BatchWriter"
				}
				delay := time.Duration(start) * 10 * time.Millisecond
				start++
				wg.Go(func() {
					time.Sleep(delay)
					t.Run(fmt.Sprintf("%s, idle %v, every %v, %s", lc.name, tc.idle, tc.pause, through), func(t *testing.T) {
						all.Add(1)
						if idleClosingPeer(t, lc, tc.idle, tc.pause, batch) {
							judged.Add(1)
						}
					})
				})
			}
		}
	}
	wg.Wait()
	if judged.Load() < all.Load()/2 {
		t.Errorf("only %d of %d cases were judged: the scenario tested little", judged.Load(), all.Load())
	}
}

// idleClosingPeer runs the scenario and reports whether its failures and
// backoffs were judged: they are not if a dial was too slow.
func idleClosingPeer(t *testing.T, lc livenessCheck, idle, pause time.Duration, batch bool) (judged bool) {
	const writers, rounds = 8, 25
	sink := testnet.NewSink(t, "tcp", testnet.WithIdleTimeout(idle))
	var dt dialTimer
	var backedOff, resets atomic.Int64 // losses followed by a backoff wait; by a reset
	hook := func(ev conn.Event) {
		if ev.State == conn.Disconnected && ev.Wait > 0 {
			backedOff.Add(1)
		}
		if errors.Is(ev.Err, syscall.ECONNRESET) {
			resets.Add(1)
		}
	}
	m := conn.New("tcp", sink.Addr(), lc.with(conn.WithDialer(dt.Dial),
		conn.WithBackoff(10*time.Millisecond, 50*time.Millisecond), conn.WithStateHook(hook))...)
	defer m.Close()
	var w io.Writer = m
	var bw *conn.BatchWriter
	if batch {
		bw = conn.NewBatchWriter(m)
		defer bw.Close()
		w = bw
	}

	tick := time.NewTicker(pause)
	defer tick.Stop()
	var failed []roundError
	for round := range rounds {
		<-tick.C
		gate := make(chan struct{})
		results := make(chan roundError, writers)
		for i := range writers {
			go func() {
				<-gate
				line := fmt.Sprintf("r%d w%d", round, i)
				_, err := fmt.Fprintln(w, line)
				results <- roundError{round, line, err}
			}()
		}
		close(gate)
		for range writers {
			if r := recv(t, results); r.err != nil {
				failed = append(failed, r)
			}
		}
	}
	if batch {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := bw.Flush(ctx); err != nil {
			t.Errorf("Flush: %v", err)
		}
	}

	want := rounds*writers - len(failed)
	sink.WaitLines(want, 10*time.Second)
	got := sink.LineCount()
	t.Logf("%d rounds of %d writers: %d failed, %d received, %d connections, %d losses followed by a backoff, %d resets",
		rounds, writers, len(failed), got, sink.Accepted(), backedOff.Load(), resets.Load())

	// A connection closed before its proof age is that of a peer that
	// accepts and drops, or half-closes: the Write after its FIN goes out
	// and waits a few milliseconds for the reset of a closed peer, and is
	// lost if the reset comes later (RELIABILITY.md); its loss is retried
	// on the backoff, and Writes may fail then. A slow dial (a loaded
	// machine) makes the proof age reach the idle timeout; only then may
	// any of this happen here. The first dial, made by New while the other
	// cases start too, is the slowest: if it alone was slow, round 0 is
	// not judged (nor the one backoff its loss starts).
	from, allowedBackoffs := 0, int64(0)
	dt.mu.Lock()
	for i, took := range dt.took {
		if max(10*time.Millisecond, 4*took)+proofMargin < idle {
			continue
		}
		if i > 0 {
			t.Logf("dial %d took %v: its proof age reached the idle timeout; failures, losses and backoffs are not judged", i, took)
			dt.mu.Unlock()
			return false
		}
		t.Logf("the first dial took %v: its proof age reached the idle timeout; round 0 is not judged", took)
		from, allowedBackoffs = 1, 1
	}
	dt.mu.Unlock()
	// A round late enough (a slow redial) that its Writes reach the peer
	// as its idle timeout fires is discarded by the peer, which closes
	// with them unread: a reset. That one loss no client can prevent.
	failedLines := map[string]bool{}
	for _, f := range failed {
		failedLines[f.line] = true
		if f.round >= from {
			t.Errorf("round %d: Write: %v, want nil", f.round, f.err)
		}
	}
	received := map[string]bool{}
	for _, l := range sink.Lines() {
		received[l] = true
	}
	lost := 0
	for round := from; round < rounds; round++ {
		for i := range writers {
			if l := fmt.Sprintf("r%d w%d", round, i); !received[l] && !failedLines[l] {
				lost++
			}
		}
	}
	if lost > int(resets.Load())*writers {
		t.Errorf("%d lines lost silently (%d resets)", lost, resets.Load())
	}
	if n := backedOff.Load(); n > allowedBackoffs {
		t.Errorf("%d losses were followed by a backoff wait, want %d: every connection was held open by the peer", n, allowedBackoffs)
	}
	return true
}

// roundError is a Write of a round that failed, and its line.
type roundError struct {
	round int
	line  string
	err   error
}
