//go:build unix

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `connpipe send -spool DIR relp://` into rsyslog's imrelp, through a
// series of sender lives on one DIR: four killed with SIGKILL while they
// deliver (in steady delivery; after a restart of rsyslogd; while sending
// what the lives before left, recovered from the spool; just after
// reconnecting from a SIGKILL of rsyslogd), then one that runs until it
// exits; and three restarts of rsyslogd (SIGTERM, SIGKILL, SIGTERM) while
// a sender runs. Each life is given a fixed block of 20,000 numbered lines
// (-file), the numbering continuing from the block before. Every line of
// every block must arrive, the first arrival of each line must follow the
// numbering (what a killed send spooled goes out before any new input),
// and the last life must exit 0, every line acknowledged, the spool empty.
// Duplicates are counted, not bounded: the spool saves its read position
// with its syncs (every 250 ms), so a kill sends again what was delivered
// since the last save, about 250 ms of delivery, and a restart of
// rsyslogd up to a window of lines.
//
// A line is connpipe's only once its spool has handed it to the operating
// system, which a SIGKILL does not undo: the spool appends records in
// order, so once the newest segment file ends with the block's last line
// (or that line has reached rsyslog: it is sent only from the spool), the
// whole block is. A life is killed only after that, at a random point of
// its delivery, measured in lines that reached rsyslog's file: with the
// main queue Direct, imrelp answers a line only once it is in the file
// (relp_test.go), so no acknowledged line can be missing from it.
//
// A life that delivers everything and exits 0 before its kill or its
// restart of rsyslogd lands (the test's polls are late on a loaded
// machine) is not a failure: it is checked like the last one, and its
// plan is given to a new life, with a new block.
const (
	spoolBlock     = 20_000 // lines a life is given
	spoolMaxLives  = 10     // the five planned, and lives that ended before their kill or restart
	spoolPad       = 54     // each line about 100 bytes, like relp_test.go's
	spoolSizeFlag  = "16M"
	spoolWaitLimit = 30 * time.Second // any one wait
)

// recoverNote is what send says when its spool holds lines from a send
// before it.
var recoverNote = regexp.MustCompile(`connpipe: spool \S+ holds \S+ \S+ from an earlier send(, the oldest record \S+ old)?: sending it before any new input`)

func spoolText(seq int) string {
	return fmt.Sprintf("sp %06d %s end", seq, strings.Repeat("y", spoolPad))
}

// A spoolLifePlan is what the test does to one sender life.
type spoolLifePlan struct {
	// restart: rsyslogd is stopped with this signal early in the life's
	// delivery, and started again, while the sender runs; 0: not in this
	// life.
	restart syscall.Signal
	// replay: the kill comes at a random point of the delivery of what
	// the lives before left (their backlog, recovered from the spool),
	// or, after a restart of rsyslogd, just after connpipe reconnected:
	// within its first 200 new lines, as it replays what the restart
	// left unacknowledged and goes on.
	replay bool
	// last: no kill; the life runs until connpipe exits.
	last bool
}

func (p spoolLifePlan) String() string {
	var parts []string
	if p.restart != 0 {
		parts = append(parts, fmt.Sprintf("rsyslogd restarted (%v)", p.restart))
	}
	switch {
	case p.last:
		parts = append(parts, "runs to its end")
	case p.replay && p.restart != 0:
		parts = append(parts, "SIGKILL just after the reconnect")
	case p.replay:
		parts = append(parts, "SIGKILL while sending what was recovered")
	default:
		parts = append(parts, "SIGKILL while delivering")
	}
	return strings.Join(parts, ", ")
}

var spoolPlans = []spoolLifePlan{
	{},
	{restart: syscall.SIGTERM},
	{replay: true},
	{restart: syscall.SIGKILL, replay: true},
	{restart: syscall.SIGTERM, last: true},
}

// outTail reads rsyslog's output file as it grows and counts the lines by
// number.
type outTail struct {
	path     string
	off      int64
	rest     []byte
	count    []int
	lines    int      // lines read, torn ones too
	distinct int      // numbers seen at least once
	torn     []string // lines that are not exactly one of spoolText's
	// The first arrival of each number must follow the numbering.
	maxFirst  int
	disorder  int
	disorderE string
	// seen: when the polls saw how many numbers, for what arrived just
	// before a kill.
	seen []seenAt
}

type seenAt struct {
	at              time.Time
	lines, distinct int
}

// arrivedSince returns how many lines (duplicates included) arrived since
// at, by the polls.
func (o *outTail) arrivedSince(at time.Time) int {
	i, _ := slices.BinarySearchFunc(o.seen, at, func(s seenAt, at time.Time) int { return s.at.Compare(at) })
	if i == 0 {
		return o.lines
	}
	return o.lines - o.seen[i-1].lines
}

// recent describes the last n polls: when, and how many numbers had
// arrived.
func (o *outTail) recent(n int) string {
	var parts []string
	for _, s := range o.seen[max(len(o.seen)-n, 0):] {
		parts = append(parts, fmt.Sprintf("%s %d", s.at.Format("15:04:05.000"), s.distinct))
	}
	return strings.Join(parts, ", ")
}

func newOutTail(path string) *outTail {
	return &outTail{path: path, count: make([]int, spoolBlock*spoolMaxLives), maxFirst: -1}
}

// poll reads what was appended since the last poll. It is cheap (no
// allocation a line): under -race on a loaded machine a slow poll would
// let connpipe deliver everything before a kill that the poll times.
func (o *outTail) poll(t *testing.T) {
	t.Helper()
	now := time.Now()
	f, err := os.Open(o.path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(o.off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	o.off += int64(len(data))
	buf := append(o.rest, data...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		o.line(bytes.TrimSpace(buf[:i]))
		buf = buf[i+1:]
	}
	o.rest = append([]byte(nil), buf...)
	o.seen = append(o.seen, seenAt{now, o.lines, o.distinct})
}

// spoolTail is what follows the number in every line of spoolText.
var spoolTail = []byte(strings.TrimPrefix(spoolText(0), "sp 000000"))

func (o *outTail) line(l []byte) {
	o.lines++
	seq := -1
	if len(l) == len("sp 000000")+len(spoolTail) && bytes.HasPrefix(l, []byte("sp ")) && bytes.Equal(l[len("sp 000000"):], spoolTail) {
		seq = 0
		for _, c := range l[len("sp "):len("sp 000000")] {
			if c < '0' || c > '9' {
				seq = -1
				break
			}
			seq = seq*10 + int(c-'0')
		}
	}
	if seq < 0 || seq >= len(o.count) {
		o.torn = append(o.torn, string(l))
		return
	}
	if o.count[seq] == 0 {
		o.distinct++
		if seq < o.maxFirst {
			if o.disorder == 0 {
				o.disorderE = fmt.Sprintf("line %d first arrived after line %d", seq, o.maxFirst)
			}
			o.disorder++
		}
		o.maxFirst = max(o.maxFirst, seq)
	}
	o.count[seq]++
}

// spooledThrough reports whether the newest segment file of the spool in
// dir ends with the line numbered seq: the spool writes its records in
// order, so every line before it was handed to the operating system too.
// The segment appended to is never removed while the sender runs.
func spooledThrough(t *testing.T, dir string, seq int) bool {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "seg-*.spool"))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) == 0 {
		return false
	}
	slices.Sort(segs) // fixed-width hexadecimal ids
	f, err := os.Open(segs[len(segs)-1])
	if errors.Is(err, os.ErrNotExist) {
		return false // removed between the listing and now: look again
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	want := syslogLine(spoolText(seq))
	off := max(fi.Size()-int64(len(want)), 0)
	tail := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(tail, off); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return bytes.Equal(tail, want)
}

// A spoolSender is one life of connpipe send -spool.
type spoolSender struct {
	cmd      *exec.Cmd
	out      lineLog
	readDone chan struct{}
	done     chan struct{} // closed when it ended, err set
	err      error
}

func startSpoolSender(t *testing.T, ctx context.Context, bin, dir, input, addr string) *spoolSender {
	t.Helper()
	s := &spoolSender{readDone: make(chan struct{}), done: make(chan struct{})}
	s.cmd = exec.CommandContext(ctx, bin, "send", "-v", "-spool", dir, "-spool-size", spoolSizeFlag,
		"-backoff-base", "10ms", "-backoff-max", "100ms", "-close-timeout", "60s", "-file", input, "relp://"+addr)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { defer close(s.readDone); s.out.read(stderr) }()
	go func() {
		<-s.readDone // its stderr closed: it is exiting
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill() // an error if it ended already
		select {
		case <-s.done:
		case <-time.After(spoolWaitLimit):
		}
	})
	return s
}

// ended reports whether the sender ended.
func (s *spoolSender) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// await waits, within spoolWaitLimit, for the sender to end.
func (s *spoolSender) await(t *testing.T, life int) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(spoolWaitLimit):
		t.Fatalf("life %d: connpipe did not end within %v:%v", life+1, spoolWaitLimit, &s.out)
	}
}

// spoolSummary is send's summary with -spool over relp://.
var spoolSummary = regexp.MustCompile(`([\d,]+) lines? read \([^)]*\), ([\d,]+) recovered from the spool, ([\d,]+) acknowledged, ([\d,]+) replayed, ([\d,]+) refused, ([\d,]+) dropped, ([\d,]+) left in the spool`)

// A sendSummary is what send's summary counts.
type sendSummary struct{ read, recovered, acked, replayed, refused, dropped, left int }

func parseSpoolSummary(t *testing.T, life int, s *spoolSender) sendSummary {
	t.Helper()
	m := spoolSummary.FindStringSubmatch(s.out.String())
	if m == nil {
		t.Fatalf("life %d: no summary with the spool's counts on connpipe's stderr:%v", life+1, &s.out)
	}
	return sendSummary{atoiCommas(m[1]), atoiCommas(m[2]), atoiCommas(m[3]), atoiCommas(m[4]), atoiCommas(m[5]), atoiCommas(m[6]), atoiCommas(m[7])}
}

func TestSpooledSendLosesNothingWhenSenderAndCollectorRestart(t *testing.T) {
	needImrelp(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	t.Logf("seed %d", seed)
	bin := buildConnpipe(t)
	r := startRsyslogInput(t, imrelpInput)
	out := newOutTail(filepath.Join(r.dir, "out.log"))
	spool := filepath.Join(t.TempDir(), "spool")
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var pollGap time.Duration // the longest between two polls of a wait
	// wait polls rsyslog's file (nothing signals its progress) until done
	// says so, and reports whether it did; false: the sender ended first.
	// It fails the test after spoolWaitLimit.
	wait := func(s *spoolSender, what string, done func() bool) bool {
		t.Helper()
		var prev time.Time
		for deadline := time.Now().Add(spoolWaitLimit); ; time.Sleep(2 * time.Millisecond) {
			out.poll(t)
			now := time.Now()
			if !prev.IsZero() {
				pollGap = max(pollGap, now.Sub(prev))
			}
			prev = now
			if done() {
				return true
			}
			if s.ended() {
				return false
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v; %d lines arrived; connpipe's stderr:%v", what, spoolWaitLimit, out.distinct, &s.out)
			}
		}
	}
	// progress returns a random point of the delivery of the next n
	// lines: between lo% and hi% of the way.
	progress := func(n, lo, hi int) int { return out.distinct + n*lo/100 + rng.IntN(n*(hi-lo)/100+1) }
	// redelivered counts the lines that had arrived before a life began
	// (before) and arrived again during it.
	redelivered := func(before []int) int {
		n := 0
		for seq, c := range out.count {
			if before[seq] > 0 && c > before[seq] {
				n++
			}
		}
		return n
	}

	var (
		start    = time.Now()
		queue    = slices.Clone(spoolPlans)
		lives    int // so far
		kills    int
		missed   int      // lives that ended by themselves before their kill or restart
		restarts []string // the restarts of rsyslogd that a sender rode out
		sigkills int      // of them, by SIGKILL
		final    *spoolSender
		finalSum sendSummary
		// How the life before ended.
		prevKilled  bool
		prevExited  bool // by itself, status 0
		leftBehind  int  // killed: the lines fed that had not arrived
		arrived250  int  // killed: the lines (duplicates included) that arrived in the 250 ms before the kill (the spool's sync interval, with which it saves its read position)
		arrived500  int  // and in the 500 ms
		sentAgain   []string
		recoverSaid int
	)
	for life := 0; len(queue) > 0; life++ {
		if life == spoolMaxLives {
			t.Fatalf("%d lives and the plan is not done: %d of them ended before their kill or restart; left: %v", life, missed, queue)
		}
		plan := queue[0]
		queue = queue[1:]
		lives = life + 1
		first, last := life*spoolBlock, (life+1)*spoolBlock-1
		var block bytes.Buffer
		for seq := first; seq <= last; seq++ {
			block.Write(syslogLine(spoolText(seq)))
		}
		input := filepath.Join(tmp, fmt.Sprintf("block%d.log", life))
		if err := os.WriteFile(input, block.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		out.poll(t)
		backlog := first - out.distinct // what the lives before left that has not arrived
		before := slices.Clone(out.count)
		s := startSpoolSender(t, ctx, bin, spool, input, r.addr)
		lifeStart := time.Now()

		// ended checks a life that ended by itself: it must have exited
		// 0, every line acknowledged, the spool empty. A miss (the life
		// was to be killed, or to ride out a restart) puts its plan back
		// for the next life.
		ended := func(why string, miss bool) {
			t.Helper()
			s.await(t, life)
			if s.err != nil {
				t.Fatalf("life %d: connpipe ended with %v %s, want status 0:%v", life+1, s.err, why, &s.out)
			}
			sum := parseSpoolSummary(t, life, s)
			if sum.read != spoolBlock || sum.acked != sum.read+sum.recovered || sum.refused+sum.dropped+sum.left != 0 {
				t.Errorf("life %d: %d read, %d recovered, %d acknowledged, %d refused, %d dropped, %d left; want %d read, every line acknowledged",
					life+1, sum.read, sum.recovered, sum.acked, sum.refused, sum.dropped, sum.left, spoolBlock)
			}
			if !strings.Contains(s.out.String(), "connpipe: spool "+spool+": empty") {
				t.Errorf("life %d: connpipe exited 0 and did not say that the spool is empty:%v", life+1, &s.out)
			}
			if prevKilled && sum.recovered < leftBehind {
				t.Errorf("life %d: %d lines recovered from the spool; %d had not arrived when the life before was killed", life+1, sum.recovered, leftBehind)
			}
			if miss {
				missed++
				queue = append([]spoolLifePlan{plan}, queue...)
				t.Logf("life %d (%v): connpipe delivered everything and exited 0 %s (the test's last polls of rsyslog's file: %s); the plan goes to the next life",
					life+1, plan, why, out.recent(3))
			}
			finalSum = sum
		}
		// checkRecovered: after a kill that left lines undelivered, the
		// spool holds them and connpipe says so; after an exit 0 it is
		// empty.
		checkRecovered := func() {
			t.Helper()
			said := recoverNote.MatchString(s.out.String())
			if said {
				recoverSaid++
			}
			switch {
			case prevKilled && leftBehind > 0 && !said:
				t.Errorf("life %d: %d lines of the lives before had not arrived, and connpipe did not say that the spool held lines from an earlier send:%v", life+1, leftBehind, &s.out)
			case prevExited && said:
				t.Errorf("life %d: the life before exited 0, and connpipe says that the spool holds lines from it:%v", life+1, &s.out)
			}
			if prevKilled {
				sentAgain = append(sentAgain, fmt.Sprintf("life %d sent again %d lines that had arrived before it began; %d lines arrived in the 250 ms before the kill of the life before, %d in the 500 ms",
					life+1, redelivered(before), arrived250, arrived500))
			}
		}
		next := func(killed bool) {
			prevKilled, prevExited = killed, !killed
			if !killed {
				leftBehind = 0
			}
		}

		if _, ok := s.out.await(time.Time{}, spoolWaitLimit, "connected to"); !ok {
			if s.ended() {
				t.Fatalf("life %d: connpipe ended (%v) before it connected:%v", life+1, s.err, &s.out)
			}
			t.Fatalf("life %d: connpipe did not connect within %v:%v", life+1, spoolWaitLimit, &s.out)
		}
		// Wait until connpipe has the whole block: the spool handed its
		// last line to the operating system, or rsyslog has it (a line is
		// sent only from the spool).
		if !wait(s, fmt.Sprintf("life %d: block spooled", life+1), func() bool {
			return out.count[last] > 0 || spooledThrough(t, spool, last)
		}) {
			ended("before the test saw its block spooled", true)
			checkRecovered()
			next(false)
			continue
		}
		spooledIn := time.Since(lifeStart)

		if plan.restart != 0 {
			// Early in the delivery (5% to 35% of the way): the sender
			// must still be at work when rsyslogd goes down.
			target := progress(last+1-out.distinct, 5, 35)
			if !wait(s, fmt.Sprintf("life %d: delivery under way before the restart", life+1), func() bool { return out.distinct >= target }) {
				ended("before the restart of rsyslogd", true)
				checkRecovered()
				next(false)
				continue
			}
			outstanding := last + 1 - out.distinct
			down := time.Now()
			r.stopWith(plan.restart)
			stopped := time.Since(down)
			time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond) // the outage
			r.start()
			// connpipe sees the loss as it sends: its next "connected to"
			// is the reconnect.
			if _, ok := s.out.await(down, spoolWaitLimit, "connected to"); !ok {
				if s.ended() {
					ended(fmt.Sprintf("before rsyslogd went down (%v after the %v)", stopped.Round(time.Millisecond), plan.restart), true)
					checkRecovered()
					next(false)
					continue
				}
				t.Fatalf("life %d: connpipe did not reconnect within %v of the restart:%v", life+1, spoolWaitLimit, &s.out)
			}
			restarts = append(restarts, fmt.Sprintf("life %d: %v with %d lines outstanding; rsyslogd gone %v after it, down %v in all",
				life+1, plan.restart, outstanding, stopped.Round(time.Millisecond), time.Since(down).Round(time.Millisecond)))
			if plan.restart == syscall.SIGKILL {
				sigkills++
			}
		}

		if plan.last {
			final = s
			select {
			case <-s.done:
			case <-ctx.Done():
				t.Fatalf("the last connpipe did not exit within the test's 2 minutes:%v", &s.out)
			}
			t.Logf("life %d (%v), the last: connpipe's stderr:%v", life+1, plan, &s.out)
			ended("at the end of its input", false)
			checkRecovered()
			break
		}

		// The kill: at a random point of what is left to deliver, or of
		// the replay.
		var target int
		out.poll(t)
		switch {
		case plan.replay && plan.restart != 0:
			target = out.distinct + 1 + rng.IntN(200)
		case plan.replay && backlog > 0:
			// Between the first recovered line and the middle of them.
			target = first - backlog + 1 + rng.IntN(backlog/2+1)
		default:
			target = progress(last+1-out.distinct, 10, 60)
		}
		if !wait(s, fmt.Sprintf("life %d: delivery under way", life+1), func() bool { return out.distinct >= target }) {
			ended("before its kill", true)
			checkRecovered()
			next(false)
			continue
		}
		killAt := time.Now()
		s.cmd.Process.Kill() // fails if it has ended: s.err says how
		s.await(t, life)
		if s.err == nil {
			ended("just before its kill", true)
			checkRecovered()
			next(false)
			continue
		}
		var ee *exec.ExitError
		if !errors.As(s.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("life %d: connpipe ended with %v, not by the SIGKILL:%v", life+1, s.err, &s.out)
		}
		kills++
		if strings.Contains(s.out.String(), "lines read") {
			t.Errorf("life %d: a killed connpipe printed a summary:%v", life+1, &s.out)
		}
		checkRecovered()
		next(true)
		out.poll(t)
		leftBehind = last + 1 - out.distinct
		arrived250, arrived500 = out.arrivedSince(killAt.Add(-250*time.Millisecond)), out.arrivedSince(killAt.Add(-500*time.Millisecond))
		t.Logf("life %d (%v): given %d new lines, %d of the lives before not yet arrived; spooled in %v; SIGKILL at %v with %d of %d fed lines arrived, %d not",
			life+1, plan, spoolBlock, backlog, spooledIn.Round(time.Millisecond), killAt.Sub(lifeStart).Round(time.Millisecond),
			out.distinct, last+1, leftBehind)
	}
	elapsed := time.Since(start)

	// Every line was acknowledged (exit 0), so it is in the file already;
	// a graceful stop changes nothing.
	r.stop()
	out.poll(t)
	if len(out.rest) > 0 {
		out.torn = append(out.torn, string(out.rest))
	}
	fed := lives * spoolBlock
	var lost, dup, dupLines int
	var firstLost []int
	for seq, n := range out.count[:fed] {
		switch {
		case n == 0:
			lost++
			if len(firstLost) < 10 {
				firstLost = append(firstLost, seq)
			}
		case n > 1:
			dup += n - 1
			dupLines++
		}
	}
	for _, l := range sentAgain {
		t.Logf("%s", l)
	}
	for _, rs := range restarts {
		t.Logf("rsyslogd restart: %s", rs)
	}
	t.Logf("the longest between two polls of rsyslog's file: %v", pollGap.Round(time.Millisecond))
	t.Logf("connpipe send -spool over RELP: %d lives (%d ended by themselves before their kill or restart), %d killed with SIGKILL, %d rsyslogd restarts ridden out (%d by SIGKILL); %d lines fed, %d arrived, %d lost, %d duplicated (%d lines more than once), %d torn, %d out of order; the last life: %d read, %d recovered from the spool, %d acknowledged, %d replayed; %d of %d lives after a kill said that the spool held lines from an earlier send; %v",
		lives, missed, kills, len(restarts), sigkills, fed, out.distinct, lost, dup, dupLines, len(out.torn), out.disorder,
		finalSum.read, finalSum.recovered, finalSum.acked, finalSum.replayed, recoverSaid, kills, elapsed.Round(time.Millisecond))

	if final == nil || final.err != nil {
		t.Errorf("the last connpipe did not exit 0")
	}
	if lost > 0 {
		t.Errorf("%d of %d lines lost, the first %v", lost, fed, firstLost)
	}
	if out.distinct != fed {
		t.Errorf("%d distinct lines arrived, %d fed", out.distinct, fed)
	}
	if len(out.torn) > 0 {
		t.Errorf("%d lines not whole, e.g. %q", len(out.torn), out.torn[0])
	}
	if out.disorder > 0 {
		t.Errorf("%d lines first arrived after a later one (%s): what the spool held did not go out before the new input", out.disorder, out.disorderE)
	}
	if kills < 3 || len(restarts) < 2 || sigkills < 1 {
		t.Errorf("%d kills, %d restarts of rsyslogd (%d by SIGKILL): the scenario did not happen", kills, len(restarts), sigkills)
	}
}
