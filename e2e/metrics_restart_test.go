//go:build unix

package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/go-kit/kit/metrics/dogstatsd"
	"github.com/go-kit/kit/metrics/graphite"
	"github.com/go-kit/log"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// An emitter is one of go-kit's metrics backends, set up with one counter.
type emitter struct {
	name string
	// make returns the counter and the emitter's WriteLoop; failed flushes
	// are logged to logger.
	make func(logger log.Logger) (metrics.Counter, func(context.Context, <-chan time.Time, io.Writer))
	// value parses the counter's value from a received line.
	value func(line string) (float64, bool)
}

var emitters = []emitter{
	{
		name: "graphite",
		make: func(logger log.Logger) (metrics.Counter, func(context.Context, <-chan time.Time, io.Writer)) {
			g := graphite.New("app.", logger)
			return g.NewCounter("requests"), g.WriteLoop
		},
		value: func(line string) (float64, bool) { // app.requests 3.000000 1700000000
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "app.requests" {
				return 0, false
			}
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		},
	},
	{
		name: "dogstatsd",
		make: func(logger log.Logger) (metrics.Counter, func(context.Context, <-chan time.Time, io.Writer)) {
			d := dogstatsd.New("app.", logger)
			return d.NewCounter("requests", 1), d.WriteLoop
		},
		value: func(line string) (float64, bool) { // app.requests:3.000000|c
			v, ok := strings.CutPrefix(line, "app.requests:")
			v, _, found := strings.Cut(v, "|")
			if !ok || !found {
				return 0, false
			}
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		},
	},
}

// Through collector restarts.
const (
	flushEvery = 25 * time.Millisecond
	restarts   = 3
	downFor    = 200 * time.Millisecond // the collector is down this long
	// Flushes between a reconnection and the next restart.
	linesBetween = 4
)

// abruptRestarts makes the restarts abrupt (the collector closes its
// connections without reading what its kernel holds) instead of graceful
// (FIN, then it reads until the client leaves): CONN_METRICS_RESTART=abrupt.
// An abrupt restart can take what was in flight from any sender, so the
// BatchWriter's loss is then measured, not asserted.
func abruptRestarts() bool { return os.Getenv("CONN_METRICS_RESTART") == "abrupt" }

// TestMetricsThroughRestarts runs go-kit's graphite and dogstatsd emitters
// with WriteLoop, flushing every 25 ms, while a loopback TCP collector
// restarts three times (down 200 ms each). Before each flush the counter
// grows by the flush's number (1, 2, 3...), so each flush's value names the
// interval it covers. Through a BatchWriter no interval may be lost: the
// values received, in order, add up the intervals 1..N consecutively and
// their sum is the sum added; graphite, which writes the counter at every
// flush, has every flush's line. Through a bare Manager the flushes that
// fail during the outages lose their intervals (the emitters reset their
// counters before writing): measured and logged, and only asserted to lose
// something.
func TestMetricsThroughRestarts(t *testing.T) {
	for _, em := range emitters {
		for _, batch := range []bool{true, false} {
			name := em.name + "/Manager"
			if batch {
				name = em.name + "/BatchWriter"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				r := runThroughRestarts(t, em, batch)
				mode := "graceful"
				if abruptRestarts() {
					mode = "abrupt"
				}
				t.Logf("%s, %d %s restarts: %d flushes, %d failed with an error (last: %v), %d lines received; sum added %d, received %d, lost %d (%.0f%%); %d connections",
					name, restarts, mode, r.flushes, r.failed, r.lastErr, len(r.values), r.added, r.received,
					r.added-r.received, 100*float64(r.added-r.received)/float64(r.added), r.conns)
				switch {
				case batch && abruptRestarts():
					// Measured only: see abruptRestarts.
				case batch:
					checkNothingLost(t, em, r)
				case r.received >= r.added || r.failed == 0:
					t.Errorf("a bare Manager through %d restarts of %v lost nothing: the outages were shorter than a flush interval?", restarts, downFor)
				}
			})
		}
	}
}

type restartRun struct {
	flushes  int64     // ticks WriteLoop received: WriteTo calls
	added    int64     // sum of what was added to the counter
	failed   int64     // flushes whose WriteTo returned an error
	lastErr  any       // the last of those errors
	values   []float64 // the counter's values received, in order
	received int64     // their sum
	conns    int       // connections the collector accepted
	stats    conn.BatchStats
}

func runThroughRestarts(t *testing.T, em emitter, batch bool) restartRun {
	sink := testnet.NewSink(t, "tcp")
	connected := make(chan struct{}, 1)
	m := conn.New("tcp", sink.Addr(), // the defaults otherwise: backoff from 1 s
		conn.WithStateHook(func(ev conn.Event) {
			if ev.State == conn.Connected {
				select {
				case connected <- struct{}{}:
				default:
				}
			}
		}))
	var (
		w  io.Writer = m
		bw *conn.BatchWriter
	)
	if batch {
		bw = conn.NewBatchWriter(m)
		w = bw
	}

	var (
		failed  atomic.Int64
		lastErr atomic.Value
	)
	logger := log.LoggerFunc(func(kv ...any) error { // WriteLoop logs "during", "WriteTo", "err", err
		failed.Add(1)
		lastErr.Store(fmt.Sprint(kv[len(kv)-1]))
		return nil
	})
	counter, writeLoop := em.make(logger)

	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time)
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		writeLoop(ctx, ticks, w)
	}()
	// The ticker goroutine: interval n adds n, then flushes.
	var (
		flushes atomic.Int64
		flushed = make(chan struct{}, 1) // a flush was handed to WriteLoop
	)
	stop := make(chan struct{})
	type sums struct{ flushes, added int64 }
	tickerDone := make(chan sums, 1)
	go func() {
		ticker := time.NewTicker(flushEvery)
		defer ticker.Stop()
		var s sums
		for {
			select {
			case <-stop:
				tickerDone <- s
				return
			case now := <-ticker.C:
				s.flushes++
				s.added += s.flushes
				counter.Add(float64(s.flushes))
				ticks <- now // taken once the previous flush is done
				flushes.Store(s.flushes)
				select {
				case flushed <- struct{}{}:
				default:
				}
			}
		}
	}()

	// settle waits for a connection and for a few flushes on it: the
	// collector restarts on a connection that has lived past its proof age
	// (see RELIABILITY.md: a FIN within ~10 ms of the dial may be a
	// half-close, and the connection is kept) and has carried writes.
	settle := func(what string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		select {
		case <-connected:
		case <-timeout:
			t.Fatalf("%s: no connection in 30 s", what)
		}
		target := flushes.Load() + linesBetween
		for flushes.Load() < target {
			select {
			case <-flushed:
			case <-timeout:
				t.Fatalf("%s: %d flushes after 30 s, want %d", what, flushes.Load(), target)
			}
		}
	}
	for i := range restarts {
		settle(fmt.Sprintf("before restart %d", i+1))
		if abruptRestarts() {
			sink.Stop()
		} else {
			sink.StopGracefully(5 * time.Second)
		}
		time.Sleep(downFor) // the collector's downtime, not synchronisation
		if err := sink.Start(); err != nil {
			t.Fatal(err)
		}
	}
	settle("after the last restart")
	close(stop)
	s := <-tickerDone
	cancel()
	<-loopDone // the last flush is done

	// A marker after the last flush: once it arrives, so has everything
	// before it.
	const marker = "end"
	if batch {
		bw.Write([]byte(marker + "\n"))
		if err := bw.Close(); err != nil {
			t.Errorf("BatchWriter.Close: %v", err)
		}
	} else {
		timeout := time.After(30 * time.Second)
		for {
			_, err := m.Write([]byte(marker + "\n"))
			if err == nil {
				break
			}
			select { // a Write fails at once without a connection
			case <-connected:
			case <-timeout:
				t.Fatalf("the marker could not be written in 30 s: %v", err)
			}
		}
	}
	if !sink.WaitUntil(func() bool {
		l := sink.Lines()
		return len(l) > 0 && l[len(l)-1] == marker
	}, 30*time.Second) {
		t.Fatal("the marker did not arrive in 30 s")
	}
	m.Close()

	r := restartRun{flushes: s.flushes, added: s.added, failed: failed.Load(), conns: sink.Accepted()}
	r.lastErr = lastErr.Load()
	for _, line := range sink.Lines() {
		if v, ok := em.value(line); ok {
			r.values = append(r.values, v)
			r.received += int64(v)
		} else if line != marker {
			t.Errorf("unexpected line %q", line)
		}
	}
	if bw != nil {
		r.stats = bw.Stats()
	}
	return r
}

// checkNothingLost checks that the values received cover the intervals
// 1..N consecutively, each once, in order. A flush may cover two intervals
// and the next none (graphite then writes a 0, dogstatsd nothing): the
// ticker adds the next amount once WriteLoop has taken the tick, which may
// be before WriteTo reads the counter. But no interval may be missing or
// repeated.
func checkNothingLost(t *testing.T, em emitter, r restartRun) {
	t.Helper()
	if r.failed != 0 {
		t.Errorf("%d flushes failed with an error through a BatchWriter (last: %v)", r.failed, r.lastErr)
	}
	if r.stats.Dropped != 0 || r.stats.Retried != 0 {
		t.Errorf("BatchWriter: %d dropped, %d retried, want none", r.stats.Dropped, r.stats.Retried)
	}
	next := int64(1) // the first interval not yet seen
	for i, v := range r.values {
		var sum int64
		k := next
		for ; sum < int64(v); k++ {
			sum += k
		}
		if sum != int64(v) {
			t.Errorf("line %d: value %v is not the sum of intervals %d..: an interval is missing or repeated", i, v, next)
			return
		}
		next = k
	}
	if next != r.flushes+1 {
		t.Errorf("intervals 1..%d received, want 1..%d", next-1, r.flushes)
	}
	if r.received != r.added {
		t.Errorf("received a sum of %d, added %d", r.received, r.added)
	}
	if em.name == "graphite" && int64(len(r.values)) != r.flushes {
		t.Errorf("%d graphite lines for %d flushes", len(r.values), r.flushes)
	}
}
