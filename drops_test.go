package conn_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/seed44b27a20/conn"
)

// dropLog collects the drop reports a hook receives and the lines a logger
// receives.
type dropLog struct {
	mu      sync.Mutex
	reports []conn.DropReport
	lines   []string
}

func (d *dropLog) hook(r conn.DropReport) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reports = append(d.reports, r)
}

func (d *dropLog) Log(kv ...any) error {
	var b strings.Builder
	log.NewLogfmtLogger(&b).Log(kv...)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lines = append(d.lines, b.String())
	return nil
}

func (d *dropLog) snapshot() ([]conn.DropReport, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]conn.DropReport(nil), d.reports...), append([]string(nil), d.lines...)
}

// dropLines returns the drop lines among lines.
func dropLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, "batch writer dropped messages") {
			out = append(out, l)
		}
	}
	return out
}

// A program hears about drops as they happen: the first at once, later
// ones summed at most once per interval, the last from Close; through the
// hook and, at level warn, through the Manager's logger. Every drop is
// reported exactly once.
func TestBatchWriterReportsDropsAsTheyHappen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d dropLog
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f, conn.WithLogger(level.NewFilter(&d, level.AllowWarn())))
		const interval = 5 * time.Second
		w := conn.NewBatchWriter(m, conn.WithBufferSize(10*(100+conn.MessageOverhead)),
			conn.WithDropHook(d.hook), conn.WithDropReportInterval(interval), conn.WithCloseTimeout(time.Second))
		msg := []byte(fmt.Sprintf("%099d\n", 0))
		// The first drop is reported at once, from a goroutine that may
		// run while Writes go on: one drop, so that the report is exact.
		for range 11 {
			w.Write(msg)
		}
		synctest.Wait()
		reports, lines := d.snapshot()
		want := conn.DropReport{Rejected: 1, Bytes: 100, Err: conn.ErrBufferFull}
		if len(reports) != 1 || reports[0] != want {
			t.Fatalf("reports after the first drop: %+v, want one: %+v", reports, want)
		}
		if l := dropLines(lines); len(l) != 1 || !strings.Contains(l[0], "level=warn") || !strings.Contains(l[0], "dropped=1 ") ||
			!strings.Contains(l[0], `err="conn: buffer full"`) {
			t.Errorf("log lines %q, want one warning of 1 dropped", lines)
		}
		for range 19 { // within the interval: for the next report
			w.Write(msg)
		}

		time.Sleep(time.Second)
		for range 5 {
			w.Write(msg)
		}
		w.Write(make([]byte, 10*(100+conn.MessageOverhead)))
		synctest.Wait()
		if reports, _ := d.snapshot(); len(reports) != 1 {
			t.Fatalf("a second report %+v within the interval", reports[1:])
		}
		time.Sleep(interval - time.Second)
		synctest.Wait()
		reports, _ = d.snapshot()
		want = conn.DropReport{Rejected: 19 + 6, Bytes: 1900 + 500 + 10*(100+conn.MessageOverhead), Err: conn.ErrTooLarge, Period: interval}
		if len(reports) != 2 || reports[1] != want {
			t.Fatalf("reports once the interval is over: %+v, want a second: %+v", reports, want)
		}

		time.Sleep(3 * interval) // quiet: the next drop is reported at once
		w.Write(msg)
		synctest.Wait()
		reports, _ = d.snapshot()
		want = conn.DropReport{Rejected: 1, Bytes: 100, Err: conn.ErrBufferFull, Period: 3 * interval}
		if len(reports) != 3 || reports[2] != want {
			t.Fatalf("reports after a quiet spell: %+v, want a third at once: %+v", reports, want)
		}

		if err := w.Close(); !errors.Is(err, conn.ErrUnflushed) {
			t.Fatalf("Close: %v, want ErrUnflushed", err)
		}
		reports, _ = d.snapshot()
		want = conn.DropReport{Discarded: 10, Bytes: 1000, Err: conn.ErrUnflushed, Period: time.Second}
		if len(reports) != 4 || reports[3] != want {
			t.Fatalf("reports after Close: %+v, want a last one from Close: %+v", reports, want)
		}
		w.Write(msg)
		time.Sleep(2 * interval)
		synctest.Wait()
		if r, _ := d.snapshot(); len(r) != 4 {
			t.Errorf("a report after Close returned: %+v", r[4:])
		}
		var sum uint64
		for _, r := range reports {
			sum += r.Rejected + r.Discarded
		}
		if st := w.Stats(); sum != st.Dropped-1 {
			t.Errorf("reported %d drops, Stats %d before the Write after Close", sum, st.Dropped)
		}
		m.Close() // delivers the last log lines
		if _, lines = d.snapshot(); len(dropLines(lines)) != 4 {
			t.Errorf("drop warnings logged: %q, want one per report", dropLines(lines))
		}
	})
}

// A hook may write into the BatchWriter it reports for, full or not: no
// recursion, no deadlock; what it drops is in the next report.
func TestDropHookMayWriteIntoItsOwnWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f)
		var (
			w     *conn.BatchWriter
			mu    sync.Mutex
			calls []conn.DropReport
		)
		ready := make(chan struct{})
		w = conn.NewBatchWriter(m, conn.WithBufferSize(2*(10+conn.MessageOverhead)), conn.WithDropReportInterval(time.Second),
			conn.WithWaitWhenFull(100*time.Millisecond),
			conn.WithDropHook(func(r conn.DropReport) {
				<-ready
				mu.Lock()
				calls = append(calls, r)
				mu.Unlock()
				w.Write([]byte("dropped:10")) // the buffer is full: waits, then is dropped
			}))
		close(ready)
		for range 3 {
			w.Write([]byte("0123456789"))
		}
		time.Sleep(3500 * time.Millisecond)
		synctest.Wait()
		mu.Lock()
		n := len(calls)
		got := append([]conn.DropReport(nil), calls...)
		mu.Unlock()
		// One at once for the first Write's drop, then one per interval for
		// the hook's own: at 0, 1, 2 and 3 s.
		if n != 4 || got[0].Rejected != 1 || got[1].Rejected != 1 || got[3].Rejected != 1 {
			t.Errorf("hook calls %+v, want 4 reports of 1 drop", got)
		}
		w.Close()
		mu.Lock()
		n = len(calls)
		mu.Unlock()
		if st := w.Stats(); st.Rejected != uint64(1+n) { // each call's Write was dropped
			t.Errorf("%d hook calls; stats %+v", n, st)
		}
	})
}

// A drop hook that panics is disabled and logged; the BatchWriter goes on.
func TestPanickingDropHookIsDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d dropLog
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f, conn.WithLogger(&d))
		calls := 0
		w := conn.NewBatchWriter(m, conn.WithBufferSize(1), conn.WithDropReportInterval(time.Second),
			conn.WithDropHook(func(conn.DropReport) { calls++; panic("hook bug") }))
		w.Write([]byte("x"))
		time.Sleep(2 * time.Second)
		w.Write([]byte("x"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		_, lines := d.snapshot()
		if calls != 1 || len(dropLines(lines)) != 2 || !strings.Contains(strings.Join(lines, ""), "drop hook panicked") {
			t.Errorf("%d calls; lines %q", calls, lines)
		}
		w.Close()
	})
}

// A second Close of a BatchWriter waits for the first, last drop report
// included: no report comes after a Close has returned (found by review).
func TestSecondCloseWaitsForTheLastDropReport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f, conn.WithAfterFunc(instantAfter(0)))
		gate := make(chan struct{})
		var calls atomic.Int64
		w := conn.NewBatchWriter(m, conn.WithCloseTimeout(time.Second),
			conn.WithDropHook(func(conn.DropReport) { <-gate; calls.Add(1) }))
		w.Write([]byte("queued, never written"))
		go w.Close() // discards after 1 s, then reports
		time.Sleep(2 * time.Second)
		synctest.Wait() // the last report is under way, in the hook
		returned := make(chan int64, 1)
		go func() {
			w.Close()
			returned <- calls.Load()
		}()
		synctest.Wait()
		select {
		case <-returned:
			t.Fatal("a second Close returned while the first was still reporting")
		default:
		}
		close(gate)
		if n := <-returned; n != 1 {
			t.Errorf("%d reports when the second Close returned, want 1", n)
		}
	})
}

// The Manager's logger may write into a BatchWriter over the same
// Manager: a drop warning the full buffer refuses is reported in the next
// interval's warning, one line per interval, never a storm.
func TestDropWarningsIntoTheirOwnFullWriterStayRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			w     *conn.BatchWriter
			mu    sync.Mutex
			lines int
		)
		ready := make(chan struct{})
		logger := log.LoggerFunc(func(kv ...any) error {
			<-ready
			mu.Lock()
			lines++
			mu.Unlock()
			return log.NewLogfmtLogger(w).Log(kv...)
		})
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f, conn.WithLogger(logger), conn.WithBackoff(time.Hour, time.Hour))
		w = conn.NewBatchWriter(m, conn.WithBufferSize(64), conn.WithDropReportInterval(time.Second), conn.WithCloseTimeout(time.Second))
		close(ready)
		w.Write(make([]byte, 64)) // too large: the first drop
		time.Sleep(10500 * time.Millisecond)
		synctest.Wait()
		mu.Lock()
		n := lines
		mu.Unlock()
		// "dial failed", then one drop warning at 0 s and one per second
		// for the warning before it, refused by the full buffer.
		if n != 1+11 {
			t.Errorf("%d log lines in 10.5 s, want 12: one per interval", n)
		}
		w.Close()
		m.Close()
	})
}

// Reports come at most every DefaultDropReportInterval (10 s) unless told
// otherwise; a zero or negative interval keeps the default. Close's report
// sums what Write refused and what Close discarded, both in its log line.
func TestDropReportsDefaultInterval(t *testing.T) {
	for _, interval := range []conn.BatchOption{nil, conn.WithDropReportInterval(0), conn.WithDropReportInterval(-time.Second)} {
		synctest.Test(t, func(t *testing.T) {
			var d dropLog
			f := &fakeNet{dialErr: errors.New("down")}
			m := newFake(t, f, conn.WithLogger(&d))
			w := conn.NewBatchWriter(m, conn.WithBufferSize(10+conn.MessageOverhead), conn.WithDropHook(d.hook),
				conn.WithCloseTimeout(time.Second), interval)
			w.Write([]byte("0123456789")) // accepted
			w.Write([]byte("0123456789")) // refused: reported at once
			time.Sleep(time.Second)
			w.Write([]byte("0123456789")) // refused: reported 10 s after the first
			time.Sleep(conn.DefaultDropReportInterval - time.Second - time.Millisecond)
			synctest.Wait()
			if r, _ := d.snapshot(); len(r) != 1 {
				t.Fatalf("reports before the interval: %+v, want 1", r)
			}
			time.Sleep(time.Millisecond)
			synctest.Wait()
			if r, _ := d.snapshot(); len(r) != 2 {
				t.Fatalf("reports at the interval: %+v, want 2", r)
			}
			w.Write([]byte("0123456789")) // refused, reported by Close
			w.Close()                     // discards the accepted one
			m.Close()
			r, lines := d.snapshot()
			want := conn.DropReport{Rejected: 1, Discarded: 1, Bytes: 20, Err: conn.ErrUnflushed, Period: time.Second}
			if len(r) != 3 || r[2] != want {
				t.Fatalf("reports: %+v, want a third from Close: %+v", r, want)
			}
			if l := dropLines(lines); len(l) != 3 || !strings.Contains(l[2], "dropped=2 rejected=1 discarded=1 bytes=20 ") {
				t.Errorf("drop warnings %q", l)
			}
		})
	}
}

// Messages discarded because the Manager closed are reported, and the
// Writes refused afterwards are reported apart, bytes included.
func TestDropsAfterTheManagerClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d dropLog
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f)
		w := conn.NewBatchWriter(m, conn.WithDropHook(d.hook), conn.WithDropReportInterval(time.Second))
		w.Write([]byte("queued"))
		m.Close() // the writer discards what is queued
		synctest.Wait()
		time.Sleep(2 * time.Second)
		w.Write([]byte("refused"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		w.Close()
		r, _ := d.snapshot()
		want := []conn.DropReport{
			{Discarded: 1, Bytes: 6, Err: conn.ErrUnflushed},
			{Rejected: 1, Bytes: 7, Err: conn.ErrClosed, Period: 2 * time.Second},
		}
		if len(r) != 2 || r[0] != want[0] || r[1] != want[1] {
			t.Errorf("reports %+v, want %+v", r, want)
		}
	})
}

// A Manager closed under an idle writer discards nothing, and says nothing:
// the report Close delivers names the cause of the drops it counts (a
// message too long), not ErrUnflushed.
func TestDropReportKeepsItsCauseWhenNothingIsDiscarded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d dropLog
		f := &fakeNet{}
		m := newFake(t, f, conn.WithLogger(&d))
		w := conn.NewBatchWriter(m, conn.WithDropHook(d.hook), conn.WithMaxMessage(4))
		if _, err := w.Write([]byte("0123456789")); !errors.Is(err, conn.ErrTooLong) {
			t.Fatalf("Write: %v, want ErrTooLong", err)
		}
		synctest.Wait() // the first report, at once
		if _, err := w.Write([]byte("0123456789")); !errors.Is(err, conn.ErrTooLong) {
			t.Fatalf("Write: %v, want ErrTooLong", err)
		} // reported within the interval, or by Close
		m.Close() // the idle writer stops: nothing to discard
		synctest.Wait()
		w.Close()
		r, _ := d.snapshot()
		if len(r) != 2 {
			t.Fatalf("drop reports %+v, want 2", r)
		}
		for _, rep := range r {
			if rep.Discarded != 0 || rep.Rejected != 1 || !errors.Is(rep.Err, conn.ErrTooLong) {
				t.Fatalf("drop reports %+v: want each one message rejected as too long", r)
			}
		}
	})
}
