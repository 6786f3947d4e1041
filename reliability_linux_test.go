//go:build linux

package conn_test

// The fault-injection suite: real loopback sockets, each scenario asserting
// counts. Figures are logged with t.Logf; RELIABILITY.md quotes them.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// The peer closes each connection after 30 ms without data, as servers with
// an idle timeout do. Each burst is written once the client's kernel has
// the FIN of the previous connection: a FIN that races a Write is a loss
// nothing can report (RELIABILITY.md), and this scenario is about the
// Write that follows a close, not about that race.
func TestScenarioIdleTimeoutPeerLosesNothing(t *testing.T) {
	eachLivenessCheck(t, testScenarioIdleTimeoutPeerLosesNothing)
}

func testScenarioIdleTimeoutPeerLosesNothing(t *testing.T, lc livenessCheck) {
	scenario(t)
	sink := testnet.NewSink(t, "tcp", testnet.WithIdleTimeout(30*time.Millisecond))
	p := newIdlePeer()
	m := conn.New("tcp", sink.Addr(), lc.with(p.options()...)...)
	defer m.Close()

	const bursts = 60
	var (
		sent, early int
		failed      = map[int]bool{}
	)
	for b := range bursts {
		proven := b == 0 || p.awaitClose(t, m)
		if !proven {
			early++
		}
		for range 1 + b%3 { // bursts of 1 to 3 lines
			if _, err := fmt.Fprintf(m, "%d\n", sent); err != nil {
				failed[sent] = true
				if proven {
					t.Errorf("Write %d: %v", sent, err)
				}
			}
			sent++
		}
	}
	if !sink.WaitLines(sent-len(failed), 10*time.Second) {
		t.Fatalf("sink received %d of %d lines (%d failed)", sink.LineCount(), sent, len(failed))
	}
	lines := sink.Lines()
	i := 0
	for seq := range sent {
		if failed[seq] {
			continue
		}
		if i >= len(lines) || lines[i] != strconv.Itoa(seq) {
			t.Fatalf("line %d received as %q, want %d: lost, out of order or torn", i, lines[i:min(i+1, len(lines))], seq)
		}
		i++
	}
	if i != len(lines) {
		t.Errorf("%d lines received beyond those written (failed Writes delivered?): %q", len(lines)-i, lines[i:])
	}
	st := m.Stats()
	t.Logf("idle-timeout peer: %d writes in %d bursts, %d failed (reported; %d bursts after a close that came before the proof age), %d received, %d connections, %d lost and redialed",
		sent, bursts, len(failed), early, sink.LineCount(), sink.Accepted(), st.Lost)
	if early > bursts/2 {
		t.Errorf("in %d of %d bursts the sink closed the connection before it proved itself: the scenario tested little", early, bursts)
	}
}

func TestScenarioSixteenWritersThroughOneResetRedialOnce(t *testing.T) {
	eachLivenessCheck(t, testScenarioSixteenWritersThroughOneResetRedialOnce)
}

func testScenarioSixteenWritersThroughOneResetRedialOnce(t *testing.T, lc livenessCheck) {
	sink := testnet.NewSink(t, "tcp")
	dt := &dialTimer{}
	m := conn.New("tcp", sink.Addr(), lc.with(conn.WithDialer(dt.Dial))...)
	defer m.Close()
	if _, err := m.Write([]byte("warm\n")); err != nil {
		t.Fatal(err)
	}
	if !sink.WaitLines(1, 10*time.Second) {
		t.Fatal("first line not received")
	}
	dt.awaitProof(0)
	if n := sink.ResetAll(); n != 1 {
		t.Fatalf("reset %d connections, want 1", n)
	}
	if closed, err := testnet.WaitPeerClosed(m.Take(), 10*time.Second); !closed || err != nil {
		t.Fatalf("the reset did not arrive: %v", err)
	}

	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			_, err := fmt.Fprintf(m, "writer %d\n", i)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Write after the reset: %v, want nil", err)
		}
	}
	if !sink.WaitLines(1+writers, 10*time.Second) {
		t.Errorf("sink received %d lines, want %d", sink.LineCount(), 1+writers)
	}
	st := m.Stats()
	t.Logf("one RST, %d writers: %d dials, %d connections accepted, %d lines received", writers, st.Dials, sink.Accepted(), sink.LineCount())
	if st.Dials != 2 || sink.Accepted() != 2 {
		t.Errorf("%d dials, %d accepted; want one redial", st.Dials, sink.Accepted())
	}
}

// Eight writers go on through four restarts of the sink: abrupt ones (it
// closes its connections, with a reset where it had unread data) and
// graceful ones (a FIN, then it reads until the client leaves, up to 1 s).
func TestScenarioEightWritersThroughFourRestarts(t *testing.T) {
	scenario(t)
	eachLivenessCheck(t, func(t *testing.T, lc livenessCheck) {
		t.Run("abrupt", func(t *testing.T) {
			t.Parallel()
			// Lines in flight at a restart are written into the old
			// connection after the sink stopped reading and before the
			// client learned of the close: the reset discards them, and
			// nothing can report them. A few per writer per restart at
			// most.
			eightWritersThroughRestarts(t, lc, 4, func(s *testnet.Sink, down time.Duration) error { return s.Restart(down) })
		})
		t.Run("graceful", func(t *testing.T) {
			t.Parallel()
			// The FIN comes while the writers are busy: the periodic check
			// notices it within 10 ms and the client leaves while the sink
			// still reads. Nothing may be lost.
			eightWritersThroughRestarts(t, lc, 0, func(s *testnet.Sink, down time.Duration) error { return s.RestartGracefully(time.Second, down) })
		})
	})
}

// eightWritersThroughRestarts runs the scenario with restart, allowing
// lostPerWriter acknowledged lines lost per writer and restart.
func eightWritersThroughRestarts(t *testing.T, lc livenessCheck, lostPerWriter int, restart func(s *testnet.Sink, down time.Duration) error) {
	const (
		writers  = 8
		restarts = 4
		down     = 200 * time.Millisecond
		maxWait  = 200 * time.Millisecond
		// The sink stays up long enough after each restart for the
		// client's next dial, whatever backoff wait it drew before: a
		// restart while it still waits would be a second outage.
		up = maxWait*3/2 + 300*time.Millisecond
	)
	sink := testnet.NewSink(t, "tcp")
	m := conn.New("tcp", sink.Addr(), lc.with(conn.WithBackoff(20*time.Millisecond, maxWait))...)
	defer m.Close()

	type result struct {
		ok  bool
		at  time.Time
		err error
	}
	var (
		mu      sync.Mutex
		results = make([][]result, writers)
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := fmt.Fprintf(m, "w%d %d\n", w, seq)
				mu.Lock()
				results[w] = append(results[w], result{err == nil, time.Now(), err})
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	var started []time.Time
	for range restarts {
		time.Sleep(up)
		if err := restart(sink, down); err != nil {
			t.Fatal(err)
		}
		started = append(started, time.Now())
	}
	time.Sleep(up)
	close(stop)
	wg.Wait()
	// A last line on the current connection: once it arrives, everything
	// sent before it on that connection has, and older connections are gone.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := m.Write([]byte("end\n"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("final Write: %v", err)
		}
	}
	if !sink.WaitUntil(func() bool { lines := sink.Lines(); return len(lines) > 0 && lines[len(lines)-1] == "end" }, 10*time.Second) {
		t.Fatal("the final line did not arrive")
	}

	received := map[string]int{}
	for _, line := range sink.Lines() {
		received[line]++
	}
	var acked, failed, lost, failedButReceived int
	for w, rs := range results {
		for seq, r := range rs {
			key := fmt.Sprintf("w%d %d", w, seq)
			switch {
			case r.ok && received[key] == 0:
				lost++
				acked++
			case r.ok:
				acked++
			case received[key] > 0:
				failedButReceived++
				failed++
			default:
				failed++
			}
			if received[key] > 1 {
				t.Errorf("%q received %d times", key, received[key])
			}
			delete(received, key)
		}
	}
	delete(received, "end")
	for line := range received {
		t.Errorf("received a line nobody wrote (torn?): %q", line)
	}
	if failedButReceived > 0 {
		t.Errorf("%d lines received although Write reported them failed", failedButReceived)
	}
	if bound := restarts * writers * lostPerWriter; lost > bound {
		t.Errorf("%d acknowledged lines lost, more than %d (%d per writer per restart)", lost, bound, lostPerWriter)
	}
	for i, at := range started {
		first := time.Time{}
		for _, rs := range results {
			for _, r := range rs {
				if r.ok && r.at.After(at) && (first.IsZero() || r.at.Before(first)) {
					first = r.at
				}
			}
		}
		if first.IsZero() || first.Sub(at) > up {
			t.Errorf("restart %d: writing resumed after %v, want within the backoff cap", i+1, first.Sub(at))
		} else {
			t.Logf("restart %d: writing resumed %v after the sink listened again", i+1, first.Sub(at).Round(time.Millisecond))
		}
	}
	t.Logf("%d writers, %d restarts: %d writes acknowledged, %d failed (reported), %d acknowledged but lost, %d fragments, %d connections",
		writers, restarts, acked, failed, lost, len(sink.Fragments()), sink.Accepted())
}

func TestScenarioFlappingPeerFollowsBackoff(t *testing.T) {
	scenario(t)
	flap := testnet.NewFlapper(t)
	m := conn.New("tcp", flap.Addr(), conn.WithBackoff(50*time.Millisecond, time.Second))
	defer m.Close()
	var ok, failed int
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if _, err := m.Write([]byte("x\n")); err != nil {
			failed++
		} else {
			ok++
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := m.Stats()
	// The schedule allows waits of 25-75ms, 50-150, 100-300, 200-600, then
	// 400ms-1s: between 4 and about 14 dials in 3s. A loop would make
	// hundreds.
	t.Logf("flapping peer, 3s: %d dials, %d accepted, %d writes returned nil, %d failed", st.Dials, flap.Accepted(), ok, failed)
	if st.Dials < 4 || st.Dials > 15 {
		t.Errorf("%d dials in 3s, want 4 to 15 on the backoff schedule", st.Dials)
	}
}

func TestScenarioBlackhole(t *testing.T) {
	scenarioAlone(t) // counts goroutines
	hole := testnet.NewBlackhole(t)
	m := conn.New("tcp", hole.Addr())
	start := time.Now()
	_, err := m.Write([]byte("x"))
	first := time.Since(start)
	if !errors.Is(err, conn.ErrConnectionUnavailable) {
		t.Fatalf("first Write: %v, want ErrConnectionUnavailable", err)
	}
	if first < 900*time.Millisecond || first > 5*time.Second {
		t.Errorf("first Write waited %v, want about 1s", first)
	}
	goroutines := runtime.NumGoroutine()
	start = time.Now()
	for range 100 {
		if _, err := m.Write([]byte("x")); !errors.Is(err, conn.ErrConnectionUnavailable) {
			t.Fatalf("Write: %v, want ErrConnectionUnavailable", err)
		}
	}
	hundred := time.Since(start)
	if hundred > time.Second {
		t.Errorf("100 Writes while the dial hangs took %v, want them to return at once", hundred)
	}
	if g := runtime.NumGoroutine(); g > goroutines+2 {
		t.Errorf("goroutines grew from %d to %d", goroutines, g)
	}
	start = time.Now()
	m.Close()
	closing := time.Since(start)
	if closing > time.Second {
		t.Errorf("Close took %v with a dial in progress, want well under 100ms", closing)
	}
	t.Logf("blackhole: first Write waited %v; 100 more took %v; Close took %v", first.Round(time.Millisecond), hundred, closing)
}

func TestScenarioPeerStopsReading(t *testing.T) {
	scenario(t)
	const timeout = 500 * time.Millisecond
	peer := testnet.NewNeverReader(t)
	m := conn.New("tcp", peer.Addr(), conn.WithWriteTimeout(timeout), conn.WithBackoff(50*time.Millisecond, time.Second))
	defer m.Close()
	chunk := make([]byte, 64<<10)
	var (
		err  error
		took time.Duration
		n    int
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for deadline := time.Now().Add(20 * time.Second); err == nil && time.Now().Before(deadline); n++ {
			start := time.Now()
			_, err = m.Write(chunk)
			took = time.Since(start)
		}
	}()
	// While the writer is stuck, nobody else is.
	time.Sleep(timeout / 2)
	start := time.Now()
	m.Take()
	m.Stats()
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Take and Stats took %v while a Write was stuck", d)
	}
	recv(t, done)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after %d Writes: %v, want a timeout", n, err)
	}
	if took < timeout*7/8 || took > timeout+2*time.Second {
		t.Errorf("the stuck Write failed after %v, want within [%v, %v + slack]", took, timeout*7/8, timeout)
	}
	if !peer.WaitAccepted(2, 10*time.Second) {
		t.Errorf("no new connection after the timeout")
	}
	t.Logf("peer stops reading: %d Writes of 64 KiB, the last failed after %v with %v; %d connections",
		n, took.Round(time.Millisecond), err, peer.Accepted())
}

// A UDP peer goes away: each Write after the first on a connection gets
// the ICMP port unreachable of the one before. Writes come 20 ms apart, so
// a connection has lived long enough to count as proven when the refusal
// arrives: only the rule that a refusal proves nothing keeps the Manager on
// its backoff schedule rather than redialing at once after every refusal.
func TestScenarioUDPPortUnreachableBacksOff(t *testing.T) {
	scenario(t)
	sink := testnet.NewUDPSink(t)
	m := conn.New("udp", sink.Addr(), conn.WithBackoff(100*time.Millisecond, time.Second))
	defer m.Close()
	if _, err := m.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if !sink.WaitCount(1, 10*time.Second) {
		t.Fatal("datagram not received")
	}
	sink.Stop()
	var refused, unavailable int
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		_, err := m.Write([]byte("into the void"))
		switch {
		case errors.Is(err, conn.ErrConnectionUnavailable):
			unavailable++
		case err != nil:
			refused++
		}
		time.Sleep(20 * time.Millisecond)
	}
	dials := m.Stats().Dials
	t.Logf("UDP peer down 2s: %d dials, %d Writes refused, %d unavailable", dials, refused, unavailable)
	if dials > 10 || refused == 0 {
		t.Errorf("%d dials and %d refusals in 2s, want a few dials on the backoff schedule", dials, refused)
	}
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	before := sink.Count()
	for end := time.Now().Add(5 * time.Second); sink.Count() == before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("no datagram delivered after the peer came back")
		}
		m.Write([]byte("back"))
	}
}

func TestScenarioCloseWhileWriting(t *testing.T) {
	sink := testnet.NewSink(t, "unix")
	m := conn.New("unix", sink.Addr())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for {
				if _, err := fmt.Fprintf(m, "w%d\n", i); errors.Is(err, conn.ErrClosed) {
					return
				}
			}
		})
	}
	if !sink.WaitLines(100, 10*time.Second) {
		t.Fatal("nothing written")
	}
	m.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	recv(t, done)
	for _, line := range sink.Lines() {
		if !strings.HasPrefix(line, "w") || len(line) != 2 {
			t.Fatalf("torn line %q", line)
		}
	}
	if c := m.Take(); c != nil {
		t.Errorf("Take after Close: %v", c)
	}
}

// A peer stops reading while one Write of 32 MiB is under way and other
// goroutines keep arriving, one every 20 ms, each with a line: none of them
// may hold the stalled Write past its timeout, and each returns within the
// timeout of its own start (plus scheduling slack). With the peek, which
// cannot ask the kernel whether a Write is blocked, the deadline may be
// moved once without knowing: the bound is twice the timeout.
func TestScenarioStalledWriteIsNotProlongedByOtherWriters(t *testing.T) {
	scenario(t)
	eachLivenessCheck(t, stalledWriteIsNotProlongedByOtherWriters)
}

func stalledWriteIsNotProlongedByOtherWriters(t *testing.T, lc livenessCheck) {
	const slack = 500 * time.Millisecond // scheduling under -race on 2 shared cores
	timeout := 500 * time.Millisecond
	bound := timeout
	if lc.peek {
		bound = 2 * timeout
	}
	peer := testnet.NewNeverReader(t)
	m := conn.New("tcp", peer.Addr(), lc.with(conn.WithWriteTimeout(timeout), conn.WithBackoff(50*time.Millisecond, 200*time.Millisecond))...)
	defer m.Close()
	type result struct {
		start, end time.Time
		err        error
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	write := func(b []byte) {
		start := time.Now()
		_, err := m.Write(b)
		mu.Lock()
		results = append(results, result{start, time.Now(), err})
		mu.Unlock()
	}
	big := make([]byte, 32<<20)
	bigDone := make(chan result, 1)
	wg.Go(func() {
		start := time.Now()
		_, err := m.Write(big)
		bigDone <- result{start, time.Now(), err}
	})
	for end := time.Now().Add(5 * timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		wg.Go(func() { write([]byte("line\n")) })
	}
	wg.Wait()
	b := <-bigDone
	took := b.end.Sub(b.start)
	if !errors.Is(b.err, os.ErrDeadlineExceeded) {
		t.Errorf("the 32 MiB Write: %v, want a timeout", b.err)
	}
	if took < timeout*7/8 || took > bound+slack {
		t.Errorf("the 32 MiB Write returned after %v, want within [%v, %v + slack]", took, timeout*7/8, bound)
	}
	var late, queued int
	var worst time.Duration
	for _, r := range results {
		d := r.end.Sub(r.start)
		worst = max(worst, d)
		if d > bound+slack {
			late++
		}
		if r.start.Before(b.end) {
			queued++
			if r.end.Sub(b.end) > slack {
				t.Errorf("a Write queued behind the stalled one returned %v after it failed", r.end.Sub(b.end))
			}
		}
	}
	if late > 0 {
		t.Errorf("%d of %d Writes returned later than %v after their start (worst %v)", late, len(results), bound, worst)
	}
	t.Logf("stalled peer, a writer every 20 ms: the 32 MiB Write failed after %v; %d Writes queued behind it; the slowest of %d small Writes took %v",
		took.Round(time.Millisecond), queued, len(results), worst.Round(time.Millisecond))
}

// A connection that is busy and healthy never times out: a peer that reads
// steadily but slower than the client writes keeps bytes in the socket's
// queue all the time, so the kernel never says "quiet" and only the Writes
// that complete can move the deadline on.
func TestBusyHealthyConnectionNeverTimesOut(t *testing.T) {
	scenario(t)
	const timeout = time.Second // generous: the reader must not be starved that long
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() { // reads 4 KiB every millisecond at most: about 4 MB/s
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(32 << 10)
		buf := make([]byte, 4<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err == nil {
			c.(*net.TCPConn).SetWriteBuffer(32 << 10)
		}
		return c, err
	}
	m := conn.New("tcp", ln.Addr().String(), conn.WithDialer(dial), conn.WithWriteTimeout(timeout))
	chunk := make([]byte, 16<<10)
	writes := 0
	for end := time.Now().Add(5 * timeout); time.Now().Before(end); writes++ {
		if _, err := m.Write(chunk); err != nil {
			t.Fatalf("Write %d, %v into a busy healthy connection: %v", writes, 5*timeout-time.Until(end), err)
		}
	}
	if n := m.Stats().Dials; n != 1 {
		t.Errorf("%d dials, want 1", n)
	}
	m.Close()
	<-served
	t.Logf("busy healthy connection: %d Writes of 16 KiB in %v, none timed out", writes, 5*timeout)
}
