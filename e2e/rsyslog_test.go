//go:build unix

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// rsyslog runs rsyslogd in the foreground with a config of its own: imtcp
// (or imrelp, relp_test.go) on a loopback port, every message's text
// appended to out.log. The main queue is direct, so that a message read
// from the socket is in the file before rsyslogd reads the next: what
// rsyslogd read is never lost at its shutdown.
type rsyslog struct {
	t      *testing.T
	bin    string
	dir    string
	addr   string
	cmd    *exec.Cmd
	exited chan error
}

func findRsyslogd(t *testing.T) string {
	if p, err := exec.LookPath("rsyslogd"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/rsyslogd"); err == nil {
		return "/usr/sbin/rsyslogd"
	}
	t.Fatal("rsyslogd not found on the PATH or in /usr/sbin: install it (Debian: apt-get install rsyslog); .ci/run does")
	return ""
}

func startRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	return startRsyslogInput(t, imtcpInput)
}

// imtcpInput configures rsyslog's plain TCP input; %[1]s is the port.
const imtcpInput = `module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="%[1]s")`

// startRsyslogInput starts rsyslogd with input, the configuration of its
// input module, in which %[1]s is the port (and %% a percent sign).
func startRsyslogInput(t *testing.T, input string) *rsyslog {
	t.Helper()
	r := &rsyslog{t: t, bin: findRsyslogd(t), dir: t.TempDir()}
	port := stablePort(t)
	r.addr = net.JoinHostPort("127.0.0.1", port)
	os.Mkdir(filepath.Join(r.dir, "work"), 0o755)
	conf := fmt.Sprintf(`global(workDirectory="%[1]s/work")
main_queue(queue.type="Direct")
%[2]s
template(name="text" type="string" string="%%msg%%\n")
action(type="omfile" file="%[1]s/out.log" template="text")
`, r.dir, fmt.Sprintf(input, port))
	if err := os.WriteFile(filepath.Join(r.dir, "rsyslog.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(func() {
		if r.cmd != nil {
			r.cmd.Process.Kill()
			<-r.exited
		}
	})
	return r
}

// stablePort returns a free loopback TCP port below the kernel's ephemeral
// range. rsyslogd is restarted on the same port while clients redial and
// probe it: a port from the ephemeral range (what binding port 0 gives)
// could meanwhile be handed to one of those clients' own sockets (a TCP
// client can even connect to itself), and rsyslogd could not bind it
// again. The kernel never hands out a port below the range by itself.
// internal/testnet does the same for its restartable sinks.
func stablePort(t *testing.T) string {
	t.Helper()
	lo := 32768 // Linux's default start of the range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var l, h int
		if _, err := fmt.Sscan(string(b), &l, &h); err == nil && l > 2048 {
			lo = l
		}
	}
	var err error
	for range 100 {
		port := strconv.Itoa(lo/2 + rand.IntN(lo/2))
		var ln net.Listener
		if ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", port)); err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatalf("no free port below the ephemeral range: %v", err)
	return ""
}

// start runs rsyslogd and waits until it accepts connections.
func (r *rsyslog) start() {
	r.t.Helper()
	log, err := os.OpenFile(filepath.Join(r.dir, "rsyslogd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(r.bin, "-n", "-f", filepath.Join(r.dir, "rsyslog.conf"), "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("starting rsyslogd: %v", err)
	}
	r.cmd, r.exited = cmd, make(chan error, 1)
	go func() { r.exited <- cmd.Wait() }()
	// Nothing signals that the input listens; ask until it answers.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		select {
		case err := <-r.exited:
			r.cmd = nil
			out, _ := os.ReadFile(filepath.Join(r.dir, "rsyslogd.log"))
			r.t.Fatalf("rsyslogd exited at start-up (%v):\n%s", err, out)
		default:
		}
		if c, err := net.DialTimeout("tcp", r.addr, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatal("rsyslogd did not accept connections within 15s")
		}
	}
}

// stop sends SIGTERM and waits for rsyslogd to exit.
func (r *rsyslog) stop() { r.t.Helper(); r.stopWith(syscall.SIGTERM) }

// stopWith sends sig and waits for rsyslogd to exit. After a SIGKILL it
// removes the pid file rsyslogd left, so that the next start does not
// depend on rsyslogd's judgement of a stale one.
func (r *rsyslog) stopWith(sig syscall.Signal) {
	r.t.Helper()
	r.cmd.Process.Signal(sig)
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		r.t.Fatalf("rsyslogd did not exit within 15s of %v", sig)
	}
	r.cmd = nil
	if sig == syscall.SIGKILL {
		os.Remove(filepath.Join(r.dir, "rsyslogd.pid"))
	}
}

// lines returns what rsyslogd wrote so far, one message a line, trimmed.
func (r *rsyslog) lines() []string {
	data, err := os.ReadFile(filepath.Join(r.dir, "out.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	return lines
}

// waitFor polls the output file until every marker is in it.
func (r *rsyslog) waitFor(markers ...string) {
	r.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		seen := map[string]bool{}
		for _, l := range r.lines() {
			seen[l] = true
		}
		missing := 0
		for _, m := range markers {
			if !seen[m] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d of the markers %q not in rsyslog's output after 30s", missing, markers)
		}
	}
}

// syslogLine frames text as an RFC 3164 message, one per line.
func syslogLine(text string) []byte {
	return []byte("<14>Nov 25 12:00:00 e2e conn: " + text + "\n")
}

// outcome tallies one sender's lines against rsyslog's output.
type outcome struct {
	sent, failed, received, lost, failedButReceived, duplicated int
}

func (o outcome) String() string {
	return fmt.Sprintf("%d acknowledged, %d failed and reported, %d received, %d acknowledged but missing, %d duplicated, %d failed yet received",
		o.sent, o.failed, o.received, o.lost, o.duplicated, o.failedButReceived)
}

// tally compares what a sender was told (ok[w][seq]) with what arrived.
func tally(prefix string, ok [][]bool, received map[string]int) outcome {
	var o outcome
	for w, seqs := range ok {
		for seq, acked := range seqs {
			n := received[prefix+strconv.Itoa(w)+" "+strconv.Itoa(seq)]
			if acked {
				o.sent++
			} else {
				o.failed++
			}
			switch {
			case n == 0 && acked:
				o.lost++
			case n > 0 && !acked:
				o.failedButReceived++
			}
			if n > 0 {
				o.received++
			}
			if n > 1 {
				o.duplicated += n - 1
			}
		}
	}
	return o
}

// parse counts rsyslog's lines by key ("m3 1234"), and the lines that are
// not exactly one message: torn or merged.
func parse(lines []string, markers ...string) (received map[string]int, torn []string) {
	received = map[string]int{}
	isMarker := map[string]bool{}
	for _, m := range markers {
		isMarker[m] = true
	}
	for _, l := range lines {
		if isMarker[l] {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 3 || f[2] != "end" || len(f[0]) < 2 || (f[0][0] != 'm' && f[0][0] != 'b' && f[0][0] != 'p') {
			torn = append(torn, l)
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			torn = append(torn, l)
			continue
		}
		received[f[0]+" "+f[1]]++
	}
	return received, torn
}

// send writes perWriter numbered lines from each of writers goroutines
// through write, pacing them so that the stream spans a few seconds, and
// returns which were acknowledged.
func send(prefix string, writers, perWriter int, write func([]byte) error) [][]bool {
	ok := make([][]bool, writers)
	var wg sync.WaitGroup
	for w := range writers {
		ok[w] = make([]bool, perWriter)
		wg.Go(func() {
			for seq := range perWriter {
				ok[w][seq] = write(syslogLine(fmt.Sprintf("%s%d %d end", prefix, w, seq))) == nil
				if seq%5 == 4 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	return ok
}

func TestRsyslogRestartedTwiceMidStream(t *testing.T) {
	const (
		writers   = 4
		perWriter = 12_500 // 100,000 lines: half through Manager.Write, half through a BatchWriter
	)
	r := startRsyslog(t)
	direct := conn.New("tcp", r.addr, conn.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
	defer direct.Close()
	batched := conn.New("tcp", r.addr, conn.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
	defer batched.Close()
	bw := conn.NewBatchWriter(batched)
	defer bw.Close()

	var (
		wg       sync.WaitGroup
		okM, okB [][]bool
		start    = time.Now()
	)
	wg.Go(func() {
		okM = send("m", writers, perWriter, func(p []byte) error { _, err := direct.Write(p); return err })
	})
	wg.Go(func() {
		okB = send("b", writers, perWriter, func(p []byte) error { _, err := bw.Write(p); return err })
	})
	for i := range 2 {
		time.Sleep(800 * time.Millisecond)
		down := time.Now()
		r.stop()
		r.start()
		t.Logf("restart %d at %v: rsyslogd down for %v", i+1, down.Sub(start).Round(time.Millisecond), time.Since(down).Round(time.Millisecond))
	}
	wg.Wait()
	t.Logf("sending took %v", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bw.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	// A marker on each connection, sent last: once rsyslogd has written it,
	// it has written everything it read before it.
	markers := []string{"marker direct", "marker batched"}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := direct.Write(syslogLine(markers[0])); err == nil {
			break
		} else if time.Now().After(end) {
			t.Fatalf("marker: %v", err)
		}
	}
	bw.Write(syslogLine(markers[1]))
	if err := bw.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	r.waitFor(markers...)
	r.stop()

	received, torn := parse(r.lines(), markers...)
	m, b := tally("m", okM, received), tally("b", okB, received)
	st := bw.Stats()
	t.Logf("Manager.Write: %v", m)
	t.Logf("BatchWriter:   %v; %d writes, %d retried, %d dropped", b, st.Writes, st.Retried, st.Dropped)
	t.Logf("torn lines: %d; reconnects: Manager %d dials, BatchWriter's Manager %d dials", len(torn), direct.Stats().Dials, batched.Stats().Dials)

	if len(torn) > 0 {
		t.Errorf("%d lines not whole, e.g. %q", len(torn), torn[0])
	}
	if m.failedButReceived > 0 || b.failedButReceived > 0 {
		t.Errorf("lines that Write reported failed were received: %d direct, %d batched", m.failedButReceived, b.failedButReceived)
	}
	if m.duplicated > 0 {
		t.Errorf("%d lines written once through Manager.Write arrived twice", m.duplicated)
	}
	// The in-flight window: lines handed to a connection after rsyslogd
	// stopped reading it, discarded with the socket. RELIABILITY.md
	// documents it; two restarts, four writers each way.
	const window = 2 * writers * 50
	if m.lost > window || b.lost > window {
		t.Errorf("acknowledged but missing: %d direct, %d batched; the documented window is %d", m.lost, b.lost, window)
	}
	if b.sent != writers*perWriter {
		t.Errorf("the BatchWriter accepted %d of %d lines", b.sent, writers*perWriter)
	}
}
