package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed44b27a20/conn"
)

// The demo's schedule.
const (
	demoIdleTimeout  = 30 * time.Millisecond  // the sink closes connections idle this long
	demoUpMin        = 600 * time.Millisecond // the sink restarts after 0.6-1s up
	demoUpMax        = time.Second
	demoDownMin      = 200 * time.Millisecond // and stays down 200-300ms
	demoDownMax      = 300 * time.Millisecond
	demoDrain        = 2 * time.Second        // a graceful stop reads at most this long after its FIN
	demoRebind       = time.Second            // how long the sink tries to bind its port again
	demoMaxBurst     = 2000                   // lines per burst: 1 to this many
	demoPauseMin     = 35 * time.Millisecond  // pauses between bursts: longer than the
	demoPauseMax     = 75 * time.Millisecond  // sink's idle timeout, mostly
	demoFlushTimeout = 3 * time.Second        // for what is queued at the end
	demoCloseTimeout = 500 * time.Millisecond // for what is left after that
	demoBackoffBase  = 50 * time.Millisecond  // the client's reconnect schedule
	demoBackoffMax   = 500 * time.Millisecond //
	demoReportOutage = 100 * time.Millisecond // outages at least this long are reported as they end
)

type demoConfig struct {
	duration time.Duration
}

func demoFlags(c *demoConfig) *flagSet {
	fs := newFlagSet("demo", "connpipe demo [-duration 4s]", `Runs the library against a misbehaving server, in-process, with nothing to
install: it streams numbered lines through a conn.Manager and a
conn.BatchWriter to a TCP sink on 127.0.0.1 that closes connections idle for
30ms and restarts every 0.6-1s (a graceful stop: it stops listening, sends FIN,
reads until the client has gone, then stays down 200-300ms). Then it checks
every sequence number at the sink and reports what arrived, what was dropped
(and reported to the program), and what was lost silently (must be 0).
Exit status 1 if a line was lost silently, torn or out of order.
`)
	fs.DurationVar(&c.duration, "duration", 4*time.Second, "how long to stream lines")
	return fs
}

func runDemo(ctx context.Context, e *env, args []string) int {
	var cfg demoConfig
	fs := demoFlags(&cfg)
	positional, err := fs.parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage(e.stdout)
		return exitOK
	case err != nil:
		return fail(e, err)
	case len(positional) > 0:
		return fail(e, usagef("demo takes no ADDRESS, only [-duration 4s]; got %q", positional[0]))
	case cfg.duration <= 0 || cfg.duration > time.Hour:
		return fail(e, usagef("-duration must be between 0 and 1h, not %v", cfg.duration))
	}
	return demo(ctx, e, cfg)
}

// demoLine appends line number seq to b: "demo <seq> <padding>\n". The
// padding depends on seq, in length and content, so that a torn or spliced
// line cannot pass for a whole one.
func demoLine(b []byte, seq int64) []byte {
	b = append(b, "demo "...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, ' ')
	c := byte('a' + seq%26)
	for range 40 + seq%33 {
		b = append(b, c)
	}
	return append(b, '\n')
}

// parseDemoLine returns the sequence number of line (without its newline),
// or false if it is not exactly a line demoLine makes.
func parseDemoLine(line []byte) (int64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte("demo "))
	if !ok {
		return 0, false
	}
	num, pad, ok := bytes.Cut(rest, []byte{' '})
	if !ok || !isDigits(string(num)) || len(num) > 15 {
		return 0, false
	}
	seq, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || int64(len(pad)) != 40+seq%33 {
		return 0, false
	}
	c := byte('a' + seq%26)
	for _, b := range pad {
		if b != c {
			return 0, false
		}
	}
	return seq, true
}

// demoSink is a TCP server on 127.0.0.1 that records the sequence number of
// every demo line it receives, per connection, and misbehaves on purpose:
// it closes connections idle for demoIdleTimeout, and restarts when told.
// Both closes are graceful: a FIN (CloseWrite), then reading until the
// client closes or demoDrain passes, so that nothing the client sends before
// it notices the FIN is lost.
type demoSink struct {
	addr string

	mu         sync.Mutex
	ln         net.Listener // nil while stopped
	stopping   bool         // a graceful stop is under way: drain new connections at once
	conns      map[*sinkConn]struct{}
	byConn     [][]int64 // sequence numbers received, per connection in accept order
	torn       []string  // lines that are not demo lines
	fragments  int       // connections that ended inside a line
	idleCloses int
	restarts   int

	acceptDone chan struct{} // closed when the current accept loop ends
	connWG     sync.WaitGroup
}

type sinkConn struct {
	c          *net.TCPConn
	draining   atomic.Bool
	drainUntil atomic.Int64 // unix nanoseconds
}

// drain half-closes the connection, so that the client sees a FIN, and
// bounds how long the sink goes on reading it.
func (sc *sinkConn) drain() {
	if sc.draining.CompareAndSwap(false, true) {
		until := time.Now().Add(demoDrain)
		sc.drainUntil.Store(until.UnixNano())
		sc.c.CloseWrite()
		sc.c.SetReadDeadline(until)
	}
}

func startDemoSink() (*demoSink, error) {
	s := &demoSink{addr: "127.0.0.1:0", conns: map[*sinkConn]struct{}{}}
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// listen listens on the sink's address, retrying briefly while the port is
// busy. Go sets SO_REUSEADDR, so connections of the last run in TIME_WAIT
// do not hold it.
func (s *demoSink) listen() error {
	deadline := time.Now().Add(demoRebind)
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.mu.Lock()
			s.addr = ln.Addr().String()
			s.ln = ln
			s.acceptDone = make(chan struct{})
			done := s.acceptDone
			s.mu.Unlock()
			go s.accept(ln, done)
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond) // no notification exists for a port becoming free
	}
}

func (s *demoSink) accept(ln net.Listener, done chan struct{}) {
	defer close(done)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // transient, e.g. out of descriptors
			continue
		}
		sc := &sinkConn{c: c.(*net.TCPConn)}
		s.mu.Lock()
		id := len(s.byConn)
		s.byConn = append(s.byConn, nil)
		s.conns[sc] = struct{}{}
		if s.stopping {
			sc.drain()
		}
		s.connWG.Add(1)
		s.mu.Unlock()
		go s.serve(sc, id)
	}
}

// serve reads one connection until the client closes it, an error, or the
// end of a drain.
func (s *demoSink) serve(sc *sinkConn, id int) {
	defer s.connWG.Done()
	buf := make([]byte, 64<<10)
	var pending []byte
	for {
		if sc.draining.Load() {
			sc.c.SetReadDeadline(time.Unix(0, sc.drainUntil.Load()))
		} else {
			sc.c.SetReadDeadline(time.Now().Add(demoIdleTimeout))
		}
		n, err := sc.c.Read(buf)
		if n > 0 {
			pending = s.record(id, append(pending, buf[:n]...))
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if !sc.draining.Load() {
				s.mu.Lock()
				s.idleCloses++
				s.mu.Unlock()
				sc.drain()
				continue
			}
			if time.Now().UnixNano() < sc.drainUntil.Load() {
				continue // the idle deadline, set just before a drain began
			}
		}
		break
	}
	sc.c.Close()
	s.mu.Lock()
	delete(s.conns, sc)
	if len(pending) > 0 {
		s.fragments++
	}
	s.mu.Unlock()
}

// record notes the complete lines of data, received on connection id, and
// returns the rest (in data's storage).
func (s *demoSink) record(id int, data []byte) []byte {
	i := bytes.LastIndexByte(data, '\n')
	if i < 0 {
		return data
	}
	s.mu.Lock()
	for line := range bytes.Lines(data[:i+1]) {
		line = line[:len(line)-1]
		if seq, ok := parseDemoLine(line); ok {
			s.byConn[id] = append(s.byConn[id], seq)
		} else {
			s.torn = append(s.torn, string(line[:min(len(line), 60)]))
		}
	}
	s.mu.Unlock()
	return append(data[:0], data[i+1:]...)
}

// stop stops gracefully: it closes the listener, half-closes every
// connection and reads each until its client closes it or the drain time
// has passed. It returns how many connections were open.
func (s *demoSink) stop() int {
	s.mu.Lock()
	ln, done := s.ln, s.acceptDone
	s.ln = nil
	s.stopping = true
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
		<-done
	}
	s.mu.Lock()
	n := len(s.conns)
	for sc := range s.conns {
		sc.drain()
	}
	s.mu.Unlock()
	s.connWG.Wait()
	s.mu.Lock()
	s.stopping = false
	s.mu.Unlock()
	return n
}

// restartLoop restarts the sink every demoUpMin-demoUpMax until stop is
// closed, and leaves it listening.
func (s *demoSink) restartLoop(stop <-chan struct{}, say func(string, ...any)) {
	pause := func(min, max time.Duration) bool {
		t := time.NewTimer(min + rand.N(max-min))
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-stop:
			return false
		}
	}
	for pause(demoUpMin, demoUpMax) {
		began := time.Now()
		open := s.stop()
		say("sink: restarting: stopped listening, sent FIN on %s, read until the client left (%s)",
			plural(open, "open connection"), elapsed(time.Since(began)))
		s.mu.Lock()
		s.restarts++
		s.mu.Unlock()
		up := pause(demoDownMin, demoDownMax)
		if err := s.listen(); err != nil {
			say("sink: cannot listen again: %v", err)
			return
		}
		if !up {
			return
		}
		say("sink: listening again after %s down", elapsed(time.Since(began)))
	}
}

// demoClient follows the Manager's state through its hook.
type demoClient struct {
	mu        sync.Mutex
	connects  int
	downSince time.Time // when the connection was lost; zero while connected
	longest   time.Duration
	outages   chan outage // ended outages worth reporting; never blocks the hook
	writer    atomic.Pointer[conn.BatchWriter]
}

// queued is how many lines the writer holds, if there is one yet: the
// Manager comes first and knows nothing of the writers made on it.
func (c *demoClient) queued() int {
	if w := c.writer.Load(); w != nil {
		return w.Stats().Queue.Messages
	}
	return 0
}

type outage struct {
	length time.Duration
	dials  int // failed dials during it
	queued int // lines waiting when it ended
}

func (c *demoClient) hook(ev conn.Event) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.State {
	case conn.Connected:
		c.connects++
		if !c.downSince.IsZero() {
			d := now.Sub(c.downSince)
			c.longest = max(c.longest, d)
			if d >= demoReportOutage {
				select {
				case c.outages <- outage{d, ev.Attempt, c.queued()}:
				default:
				}
			}
		}
		c.downSince = time.Time{}
	case conn.Disconnected:
		if c.downSince.IsZero() && c.connects > 0 {
			c.downSince = now
		}
	}
}

// stats returns the reconnects so far and the longest outage, counting one
// still under way.
func (c *demoClient) stats() (reconnects int, longest time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	longest = c.longest
	if !c.downSince.IsZero() {
		longest = max(longest, time.Since(c.downSince))
	}
	return max(c.connects-1, 0), longest
}

func demo(ctx context.Context, e *env, cfg demoConfig) int {
	sink, err := startDemoSink()
	if err != nil {
		return fail(e, fmt.Errorf("demo: cannot start the sink: %w", err))
	}
	out := newSplitConsole(e.stdout, e.stderr, e.tty)
	start := time.Now()
	say := func(format string, args ...any) {
		out.Printf("%6.2fs  "+format, append([]any{time.Since(start).Seconds()}, args...)...)
	}

	fmt.Fprintf(e.stdout, `connpipe demo: %v of numbered lines through package conn to a sink on %s
that misbehaves on purpose: it closes connections idle for %v (the client
pauses between bursts), and every %v-%vs it restarts: it stops listening, sends
FIN, reads until the client has gone, and stays down %v-%v.

The client is the code you would write:
    m := conn.New("tcp", addr, conn.WithBackoff(%s, %s))
    w := conn.NewBatchWriter(m)  // 4 MiB queue; Write never waits on the network
    w.Write(line)                 // one message per line

`, cfg.duration, sink.addr, demoIdleTimeout, demoUpMin.Seconds(), demoUpMax.Seconds(),
		demoDownMin, demoDownMax, goDuration(demoBackoffBase), goDuration(demoBackoffMax))

	client := &demoClient{outages: make(chan outage, 64)}
	m := conn.New("tcp", sink.addr,
		conn.WithBackoff(demoBackoffBase, demoBackoffMax),
		conn.WithDialTimeout(time.Second),
		conn.WithWriteTimeout(2*time.Second),
		conn.WithStateHook(client.hook),
	)
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithCloseTimeout(demoCloseTimeout))
	defer w.Close()
	client.writer.Store(w)

	// The sink's schedule, and a reporter for outages and progress.
	stopRestarts, restartsDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(restartsDone)
		sink.restartLoop(stopRestarts, say)
	}()
	stopReport, reportDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(reportDone)
		demoProgress(out, w, m, client, start, say, stopReport)
	}()

	// The program: bursts of lines, with pauses.
	var (
		seq      int64
		rejected uint64
		accepted []bool // by sequence number
		line     []byte
		end      = start.Add(cfg.duration)
		pause    = time.NewTimer(0)
		stopped  bool // by an interrupt
	)
	<-pause.C
generate:
	for time.Now().Before(end) {
		for range 1 + rand.IntN(demoMaxBurst) {
			line = demoLine(line[:0], seq)
			_, err := w.Write(line)
			accepted = append(accepted, err == nil)
			if err != nil {
				rejected++
			}
			seq++
		}
		pause.Reset(demoPauseMin + rand.N(demoPauseMax-demoPauseMin))
		select {
		case <-pause.C:
		case <-ctx.Done():
			stopped = true
			break generate
		}
	}
	say("client: stopped writing after %s lines; flushing the queue", count(seq))

	// The end: the sink's schedule stops, leaving it listening (after a
	// restart under way, which may wait for the client to notice its FIN),
	// while the queue drains.
	close(stopRestarts)
	flushCtx, cancel := context.WithTimeout(context.Background(), demoFlushTimeout)
	stopFlush := context.AfterFunc(ctx, cancel) // an interrupt now ends the flush
	if stopped {
		stopFlush()
		stopFlush = context.AfterFunc(orNever(e.abort), cancel) // only a second one does
	}
	flushErr := w.Flush(flushCtx)
	stopFlush()
	cancel()
	flushed := time.Since(start)
	reconnects, longest := client.stats()
	w.Close()
	m.Close()
	close(stopReport)
	<-reportDone
	<-restartsDone
	out.ClearStatus()
	sink.stop() // the client has closed: this reads what is left

	st := w.Stats()
	r := sink.check(accepted)
	droppedAtClose := st.Discarded
	lost := int64(st.Accepted) - int64(droppedAtClose) - int64(r.delivered)

	sink.mu.Lock()
	idleCloses, restarts, fragments := sink.idleCloses, sink.restarts, sink.fragments
	sink.mu.Unlock()

	pr := func(label, value, note string) {
		fmt.Fprintf(e.stdout, "  %-20s %8s  %s\n", label, value, note)
	}
	secs := flushed.Seconds()
	fmt.Fprintf(e.stdout, "\nDelivery report (every sequence number checked at the sink)\n")
	pr("lines written", count(st.Accepted), "accepted by BatchWriter.Write")
	pr("delivered", count(r.delivered), "arrived whole, each once")
	pr("failed and reported", count(rejected+droppedAtClose), fmt.Sprintf("dropped, and the program was told: %s ErrBufferFull at Write, %s left at Close", count(rejected), count(droppedAtClose)))
	pr("silently lost", strconv.FormatInt(lost, 10), "accepted, never reported, never arrived")
	pr("duplicates", count(r.duplicates), "whole lines received twice")
	pr("torn", count(r.torn), fmt.Sprintf("lines received damaged (%s cut short by a dying connection, then resent whole)", plural(fragments, "line")))
	pr("out of order", count(r.outOfOrder), "lines received after a later one")
	pr("reconnects", count(reconnects), fmt.Sprintf("the sink closed %s and restarted %s", plural(idleCloses, "idle connection"), plural(restarts, "time")))
	pr("longest outage", elapsed(longest), "without a connection, while lines waited in the queue")
	pr("throughput", rateString(float64(r.delivered)/secs), fmt.Sprintf("lines/s, %s/s, in %s writes on the socket (%.0f lines each)",
		bytesize(float64(st.WrittenBytes)/secs), count(st.Writes), float64(st.Written)/float64(max(st.Writes, 1))))
	fmt.Fprintln(e.stdout)

	bad := lost != 0 || r.torn > 0 || r.outOfOrder > 0 || r.unasked > 0
	switch {
	case bad:
		fmt.Fprintf(e.stdout, "FAIL: ")
		if lost != 0 {
			fmt.Fprintf(e.stdout, "%d lines lost silently. ", lost)
		}
		if r.torn > 0 {
			fmt.Fprintf(e.stdout, "%d torn lines, e.g. %q. ", r.torn, r.example)
		}
		if r.outOfOrder > 0 {
			fmt.Fprintf(e.stdout, "%d lines out of order. ", r.outOfOrder)
		}
		if r.unasked > 0 {
			fmt.Fprintf(e.stdout, "%d lines arrived that Write had reported dropped. ", r.unasked)
		}
		fmt.Fprintln(e.stdout)
		if stopped || ctx.Err() != nil {
			return e.interrupted()
		}
		return exitFailed
	case flushErr != nil:
		fmt.Fprintf(e.stdout, "OK, but the queue did not drain in time (%v): what was left is counted as failed and reported.\n", flushErr)
	default:
		fmt.Fprintf(e.stdout, "OK: every line the program handed over arrived once, whole and in order,\nthrough %s; the program never waited on the network.\n", plural(reconnects, "reconnect"))
	}
	if stopped || ctx.Err() != nil {
		return e.interrupted()
	}
	return exitOK
}

// orNever returns ctx, or a context that is never done if ctx is nil.
func orNever(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

// goDuration writes d as Go source: "50*time.Millisecond", "time.Second".
func goDuration(d time.Duration) string {
	unit, name := time.Millisecond, "time.Millisecond"
	if d%time.Second == 0 {
		unit, name = time.Second, "time.Second"
	}
	if d == unit {
		return name
	}
	return strconv.FormatInt(int64(d/unit), 10) + "*" + name
}

// demoProgress prints outages as they end, and progress: a status line on
// a terminal, or a line a second.
func demoProgress(out *console, w *conn.BatchWriter, m *conn.Manager, c *demoClient, start time.Time, say func(string, ...any), stop <-chan struct{}) {
	interval := statusInterval
	if !out.tty {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case o := <-c.outages:
			say("client: reconnected after %s without a connection (%s failed); %s queued meanwhile go out now",
				elapsed(o.length), plural(o.dials, "dial"), plural(o.queued, "line"))
		case <-t.C:
			st := w.Stats()
			reconnects, _ := c.stats()
			line := fmt.Sprintf("%s lines · %s · %s · %s queued · %s dropped",
				count(st.Accepted), m.Stats().State, plural(reconnects, "reconnect"), count(st.Queue.Messages), count(st.Dropped))
			if out.tty {
				out.Status(fmt.Sprintf("%6.2fs  %s", time.Since(start).Seconds(), line))
			} else {
				say("%s", line)
			}
		}
	}
}

// demoResult is what the sink received, checked against what was accepted.
type demoResult struct {
	delivered  uint64 // accepted lines received, counted once
	duplicates uint64 // lines received more than once
	outOfOrder uint64 // lines received after a later one
	torn       uint64 // lines that are not demo lines
	unasked    uint64 // lines received that Write had rejected
	example    string // a torn line
}

// check goes through the lines received, connection by connection in the
// order they were accepted: the order the client dialed them, and so the
// order it wrote.
func (s *demoSink) check(accepted []bool) demoResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r demoResult
	r.torn = uint64(len(s.torn))
	if len(s.torn) > 0 {
		r.example = s.torn[0]
	}
	seen := make([]bool, len(accepted))
	highest := int64(-1)
	for _, seqs := range s.byConn {
		for _, seq := range seqs {
			switch {
			case seq >= int64(len(accepted)):
				r.torn++ // a number never written
				continue
			case seen[seq]:
				r.duplicates++
				continue
			}
			seen[seq] = true
			if seq < highest {
				r.outOfOrder++
			}
			highest = max(highest, seq)
			if accepted[seq] {
				r.delivered++
			} else {
				r.unasked++
			}
		}
	}
	return r
}
