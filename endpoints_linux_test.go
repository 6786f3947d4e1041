package conn_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// Several endpoints on real loopback sockets (issue 13): each test counts
// every line by writer and sequence number at the sinks.

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

// endOn writes "end" until it succeeds, then waits until it has arrived
// at sink and the sink has no other connection open: then every line
// written before it has arrived, on that connection or an older one, which
// the sink read to its end.
func endOn(t *testing.T, m *conn.Manager, sink *testnet.Sink) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := m.Write([]byte("end\n")); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("final Write: %v", err)
		}
	}
	if !sink.WaitUntil(func() bool { return slices.Contains(sink.Lines(), "end") && sink.OpenConns() <= 1 }, 10*time.Second) {
		t.Fatalf("the final line did not arrive, or older connections stay open (%d open)", sink.OpenConns())
	}
}

func TestScenarioPriorityFailoverAndFailback(t *testing.T) {
	scenario(t)
	t.Run("reset", func(t *testing.T) {
		// Lines written into the primary's connection after it stopped
		// reading are discarded by the reset: a few per writer.
		failoverAndBack(t, 4, func(s *testnet.Sink) {
			s.ResetAll()
			s.Stop()
		})
	})
	t.Run("graceful", func(t *testing.T) {
		// The FIN is noticed within 10 ms while the primary still reads:
		// nothing may be lost.
		failoverAndBack(t, 0, func(s *testnet.Sink) { go s.StopGracefully(time.Second) })
	})
}

// failoverAndBack writes from 8 goroutines through a Manager with a
// primary and a standby, stops the primary with stop, starts it again,
// and checks that the lines moved to the standby and back, with at most
// lostPerWriter acknowledged lines lost per writer at the failover and
// none at the fail-back.
func failoverAndBack(t *testing.T, lostPerWriter int, stop func(*testnet.Sink)) {
	const (
		writers = 8
		probe   = 300 * time.Millisecond
	)
	primary := testnet.NewSink(t, "tcp")
	standby := testnet.NewSink(t, "tcp")
	var evs events
	m := conn.New("tcp", primary.Addr(), conn.WithEndpoints(standby.Addr()),
		conn.WithProbeInterval(probe), conn.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		conn.WithStateHook(evs.hook))
	defer m.Close()

	done := make(chan struct{})
	results := numbered(0, writers, time.Millisecond, m.Write, done)
	if !primary.WaitLines(200, 10*time.Second) {
		t.Fatal("no lines at the primary")
	}
	stopped := time.Now()
	stop(primary)
	if !standby.WaitLines(200, 10*time.Second) {
		t.Fatal("the lines did not move to the standby")
	}
	failover := time.Since(stopped)
	if st := m.Stats(); st.Endpoint != standby.Addr() {
		t.Errorf("Stats().Endpoint = %q after the failover, want the standby %q", st.Endpoint, standby.Addr())
	}
	if primary.WaitUntil(func() bool { return primary.OpenConns() == 0 }, 5*time.Second); primary.OpenConns() != 0 {
		t.Fatal("the primary still has connections")
	}
	atPrimary := primary.LineCount()
	if err := primary.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if !primary.WaitUntil(func() bool { return primary.LineCount() > atPrimary+200 }, 10*time.Second) {
		t.Fatal("the lines did not move back to the primary")
	}
	failback := time.Since(back)
	// The probe interval is spread by ±10%; the first probe may be due
	// almost a whole interval after the primary is back.
	if bound := probe*11/10 + time.Second; failback > bound {
		t.Errorf("lines returned to the primary %v after it was back, want within the probe interval (%v) and a margin: %v", failback, probe, bound)
	}
	if evs.find(back, func(ev conn.Event) bool {
		return ev.State == conn.Connected && ev.Switch == conn.Failback && ev.Endpoint == primary.Addr()
	}).IsZero() {
		t.Error("no Failback event to the primary")
	}
	time.Sleep(100 * time.Millisecond) // lines on the primary after the move
	close(done)
	rs := results()
	endOn(t, m, primary)

	received := append(primary.Lines(), standby.Lines()...)
	lg := account(t, rs, received, "end")
	if lg.failedButReceived > 0 {
		t.Errorf("%d lines received although Write reported them failed", lg.failedButReceived)
	}
	if bound := writers * lostPerWriter; lg.lost > bound {
		t.Errorf("%d acknowledged lines lost at the failover, more than %d", lg.lost, bound)
	}
	if n := lg.lostSince(back); n > 0 {
		t.Errorf("%d acknowledged lines lost after the primary was back: the fail-back must lose nothing", n)
	}
	if f := primary.Fragments(); lostPerWriter == 0 && len(f) > 0 {
		t.Errorf("torn lines at the primary: %q", f)
	}
	if f := standby.Fragments(); len(f) > 0 {
		t.Errorf("torn lines at the standby: %q", f)
	}
	if st := m.Stats(); st.Switches < 1 || st.Endpoint != primary.Addr() {
		t.Errorf("Stats() = %+v, want a switch and the primary", st)
	}
	t.Logf("%d writers: %d lines acked, %d failed (reported), %d acked but lost; failover %v, failback %v; connections: primary %d, standby %d",
		writers, lg.acked, lg.failed, lg.lost, failover.Round(time.Millisecond), failback.Round(time.Millisecond), primary.Accepted(), standby.Accepted())
}

func TestScenarioHangingPrimaryDoesNotHoldUpTheStandby(t *testing.T) {
	scenario(t)
	primary := testnet.NewBlackhole(t)
	standby := testnet.NewSink(t, "tcp")
	start := time.Now()
	m := conn.New("tcp", primary.Addr(), conn.WithEndpoints(standby.Addr()))
	defer m.Close()
	if _, err := m.Write([]byte("first\n")); err != nil {
		t.Fatalf("first Write: %v", err)
	}
	took := time.Since(start)
	if !standby.WaitLines(1, 10*time.Second) {
		t.Fatal("the first line did not reach the standby")
	}
	// The standby is dialed after the stagger (250 ms); a loopback dial
	// takes well under a millisecond, but -race on two busy cores may
	// stretch it: the bound is far below the 10 s dial timeout.
	if took < conn.DefaultDialStagger || took > conn.DefaultDialStagger+750*time.Millisecond {
		t.Errorf("the first Write took %v, want the stagger (%v) plus the dial time", took, conn.DefaultDialStagger)
	}
	if st := m.Stats(); st.Endpoint != standby.Addr() || st.DialFailures != 0 {
		t.Errorf("Stats() = %+v, want connected to the standby after one round", st)
	}
	t.Logf("first Write landed on the standby %v after New", took.Round(time.Millisecond))
}

// shares returns each count's deviation from an even share, as a
// fraction of it.
func shares(counts []int) (worst float64) {
	total := 0
	for _, c := range counts {
		total += c
	}
	even := float64(total) / float64(len(counts))
	for _, c := range counts {
		worst = max(worst, abs(float64(c)-even)/even)
	}
	return worst
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func TestScenarioSpreadEvenlyAndRebalance(t *testing.T) {
	scenario(t)
	const (
		managers = 64
		maxAge   = time.Second
	)
	sinks := make([]*testnet.Sink, 5)
	for i := range sinks {
		sinks[i] = testnet.NewSink(t, "tcp")
	}
	var list atomic.Pointer[[]string]
	setList := func(n int) {
		l := make([]string, n)
		for i := range l {
			l[i] = sinks[i].Addr()
		}
		list.Store(&l)
	}
	setList(4)
	discover := func(context.Context) ([]string, error) { return *list.Load(), nil }

	ms := make([]*conn.Manager, managers)
	for i := range ms {
		ms[i] = conn.New("tcp", "", conn.WithDiscovery(discover), conn.WithPolicy(conn.Spread), conn.WithMaxConnectionAge(maxAge))
		defer ms[i].Close()
	}
	done := make(chan struct{})
	var all []func() [][]line
	for i, m := range ms {
		all = append(all, numbered(i, 1, 5*time.Millisecond, m.Write, done))
	}

	// Connections and bytes (lines are all about the same size) per sink,
	// over a period.
	period := func(n int, d time.Duration) (conns, lines []int) {
		before := make([]int, n)
		for i := range n {
			before[i] = sinks[i].LineCount()
		}
		time.Sleep(d)
		for i := range n {
			conns = append(conns, sinks[i].OpenConns())
			lines = append(lines, sinks[i].LineCount()-before[i])
		}
		return conns, lines
	}
	open := func(n int) bool {
		total := 0
		for i := range n {
			total += sinks[i].OpenConns()
		}
		return total == managers
	}
	if !sinks[0].WaitUntil(func() bool { return open(4) }, 10*time.Second) {
		t.Fatal("not every Manager connected")
	}
	conns, lines := period(4, 500*time.Millisecond)
	if c, l := shares(conns), shares(lines); c > 0.2 || l > 0.2 {
		t.Errorf("over 4 sinks: connections %v (%.0f%% off even), lines %v (%.0f%% off): want within ±20%%", conns, 100*c, lines, 100*l)
	}
	t.Logf("64 Managers over 4 sinks: connections %v, lines in 500 ms %v", conns, lines)

	setList(5)
	time.Sleep(2 * maxAge)
	if !sinks[0].WaitUntil(func() bool { return open(5) }, 10*time.Second) {
		t.Fatal("not every Manager connected after the rotations")
	}
	conns, lines = period(5, 500*time.Millisecond)
	if c, l := shares(conns), shares(lines); c > 0.2 || l > 0.2 {
		t.Errorf("after a 5th endpoint and 2× the maximum age: connections %v (%.0f%% off even), lines %v (%.0f%% off): want within ±20%%", conns, 100*c, lines, 100*l)
	}
	t.Logf("after a 5th endpoint and 2× the maximum age: connections %v, lines in 500 ms %v", conns, lines)

	close(done)
	rs := make([][]line, 0, managers)
	acked := 0
	for _, r := range all {
		w := r()[0]
		rs = append(rs, w)
		for _, l := range w {
			if l.ok {
				acked++
			}
		}
	}
	for _, m := range ms {
		m.Close()
	}
	total := func() int {
		n := 0
		for _, s := range sinks {
			n += s.LineCount()
		}
		return n
	}
	sinks[0].WaitUntil(func() bool { return total() >= acked }, 10*time.Second)
	var received []string
	for _, s := range sinks {
		received = append(received, s.Lines()...)
		if f := s.Fragments(); len(f) > 0 {
			t.Errorf("torn lines: %q", f)
		}
	}
	// Rotations lose nothing, whatever the endpoint.
	if lg := account(t, rs, received); lg.lost > 0 || lg.failed > 0 {
		t.Errorf("%d lines acked, %d acked but lost, %d failed: rotations must lose nothing", lg.acked, lg.lost, lg.failed)
	}
}

// tallySink is a TCP sink that counts numbered lines ("w<i> <seq>") as it
// reads them, without keeping them: a rotation test writing flat out
// sends millions.
type tallySink struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	seen [][]uint8 // seen[w][seq]: how many times
	odd  []string  // lines that are not numbered, and fragments
	open int
	ends int // "end" lines
}

func newTallySink(t *testing.T, writers int) *tallySink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tallySink{ln: ln, seen: make([][]uint8, writers)}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open++
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *tallySink) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		l, err := r.ReadSlice('\n')
		if err != nil {
			s.mu.Lock()
			if len(l) > 0 {
				s.odd = append(s.odd, "fragment "+string(l))
			}
			s.open--
			s.mu.Unlock()
			return
		}
		s.count(l[:len(l)-1])
	}
}

func (s *tallySink) count(l []byte) {
	w, seq, ok := parseNumbered(l)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case ok && w < len(s.seen):
		for len(s.seen[w]) <= seq {
			s.seen[w] = append(s.seen[w], 0)
		}
		s.seen[w][seq]++
	case string(l) == "end":
		s.ends++
	default:
		s.odd = append(s.odd, string(l))
	}
}

// parseNumbered parses "w<w> <seq>".
func parseNumbered(l []byte) (w, seq int, ok bool) {
	a, b, found := bytes.Cut(l, []byte{' '})
	if !found || len(a) < 2 || a[0] != 'w' {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(string(a[1:]))
	seq, err2 := strconv.Atoi(string(b))
	return w, seq, err1 == nil && err2 == nil && w >= 0 && seq >= 0
}

// check compares what arrived with what was written: every acked line
// once, no failed line, nothing else. It waits for "end", written last,
// and for every older connection to have been read to its end.
func (s *tallySink) check(t *testing.T, results [][]line) (acked, lost int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		done := s.ends > 0 && s.open <= 1
		s.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the final line did not arrive, or older connections stay open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for w, rs := range results {
		for seq, r := range rs {
			n := 0
			if seq < len(s.seen[w]) {
				n = int(s.seen[w][seq])
			}
			switch {
			case !r.ok:
				t.Errorf("w%d %d: Write failed (received %d times)", w, seq, n)
			case n == 0:
				lost++
			case n > 1:
				t.Errorf("w%d %d received %d times", w, seq, n)
			}
			if r.ok {
				acked++
			}
		}
		if len(s.seen[w]) > len(rs) {
			t.Errorf("writer %d: received sequence numbers up to %d, but wrote %d lines", w, len(s.seen[w])-1, len(rs))
		}
	}
	for _, o := range s.odd {
		t.Errorf("received a line nobody wrote (torn?): %q", o)
	}
	return acked, lost
}

func TestScenarioRotationUnderLoadLosesNothing(t *testing.T) {
	scenario(t)
	const (
		rotations = 1000
		maxAge    = 5 * time.Millisecond
		writers   = 4
	)
	for _, via := range []string{"Write", "BatchWriter"} {
		t.Run(via, func(t *testing.T) {
			sink := newTallySink(t, writers)
			m := conn.New("tcp", sink.ln.Addr().String(), conn.WithMaxConnectionAge(maxAge))
			defer m.Close()
			write := m.Write
			var w *conn.BatchWriter
			if via == "BatchWriter" {
				// Waiting for room rather than dropping: every line must go.
				w = conn.NewBatchWriter(m, conn.WithWaitWhenFull(time.Minute))
				defer w.Close()
				write = w.Write
			}
			done := make(chan struct{})
			results := numbered(0, writers, 0, write, done)
			start := time.Now()
			for m.Stats().Switches < rotations {
				if time.Since(start) > 2*time.Minute {
					t.Fatalf("only %d rotations in %v", m.Stats().Switches, time.Since(start))
				}
				time.Sleep(10 * time.Millisecond)
			}
			close(done)
			rs := results()
			took := time.Since(start)
			if w != nil {
				if err := w.Close(); err != nil {
					t.Fatalf("BatchWriter.Close: %v", err)
				}
				if st := w.Stats(); st.Dropped != 0 || st.Retried != 0 {
					t.Errorf("BatchWriter stats %+v: want nothing dropped or retried", st)
				}
			}
			if _, err := m.Write([]byte("end\n")); err != nil {
				t.Fatalf("final Write: %v", err)
			}
			acked, lost := sink.check(t, rs)
			if lost > 0 {
				t.Errorf("%d of %d acked lines lost: rotation must lose nothing", lost, acked)
			}
			t.Logf("%s, %d writers flat out: %d lines through %d rotations in %v: %d lost, 0 duplicated, 0 torn",
				via, writers, acked, m.Stats().Switches, took.Round(time.Millisecond), lost)
		})
	}
}

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

func TestWriteWithSeveralEndpointsAllocatesNothing(t *testing.T) {
	a, b := testnet.NewUDPSink(t), testnet.NewSink(t, "tcp")
	for _, m := range []*conn.Manager{
		conn.New("udp", a.Addr(), conn.WithEndpoints("127.0.0.1:9"), conn.WithMaxConnectionAge(time.Millisecond)),
		conn.New("tcp", b.Addr(), conn.WithEndpoints("127.0.0.1:9"), conn.WithMaxConnectionAge(time.Millisecond)),
	} {
		defer m.Close()
		msg := []byte("x\n")
		if _, err := m.Write(msg); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(1000, func() { m.Write(msg) }); n != 0 {
			t.Errorf("Write on %s with rotations every millisecond allocates %v times", m.Stats().Endpoint, n)
		}
	}
}
