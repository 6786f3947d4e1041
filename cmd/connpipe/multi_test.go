package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// The lines a failover may lose are those written to the primary's
// connection that the primary never read: the in-flight window.
//
// gracefulMaxLost is that bound when the primary stops as a careful
// server does (StopGracefully: it closes its listener, half-closes its
// connections and reads each to its end): send notices the FIN before it
// writes again (the liveness check runs before a write on a connection
// idle for 1 ms, and the producer here writes a line every 2 ms), then
// closes its side; everything written to the primary is read: 0.
//
// abruptMaxLost is that bound when the primary closes its listener and
// its connections at once (Sink.Stop), discarding what it had received
// and not yet read, and what arrives after the close. The sink reads as
// data comes, so that is what the producer wrote while the sink's reader
// lagged, plus a write in flight as the FIN came: 50 lines, 100 ms of the
// producer, is ample for a loaded machine (measured under -race: 0, now
// and then 1). A faster producer's window is what fits in the socket
// buffers; see RELIABILITY.md.
const (
	gracefulMaxLost = 0
	abruptMaxLost   = 50
)

// proofAgeMargin is how long the primary's connection carries lines
// before the primary stops. The library takes a FIN that comes within the
// connection's proof age (4 times the dial's duration, at least 10 ms) for
// a possible half-close: it writes on and, if the peer takes the data, as
// a gracefully stopping server does, keeps writing to it until it closes
// for good, which is no failover. 1 s covers dials of up to 250 ms, far
// more than loopback takes even under -race on a loaded machine.
const proofAgeMargin = time.Second

// outliveProofAge feeds lines until the connection accepted at since has
// lived proofAgeMargin.
func outliveProofAge(f *seqFeed, since time.Time) {
	f.t.Helper()
	for time.Since(since) < proofAgeMargin {
		f.lines(5)
	}
}

// A seqFeed writes numbered lines, "seq 0", "seq 1"..., to send's stdin at
// the pace of a slow producer.
type seqFeed struct {
	t    *testing.T
	w    io.WriteCloser
	sent int
}

func (f *seqFeed) lines(n int) {
	f.t.Helper()
	for range n {
		if _, err := fmt.Fprintf(f.w, "seq %d\n", f.sent); err != nil {
			f.t.Fatalf("writing to connpipe: %v", err)
		}
		f.sent++
		time.Sleep(2 * time.Millisecond) // pacing: a slow producer, not synchronisation
	}
}

// startFed starts connpipe with args and returns the feed of its stdin
// and its stderr.
func startFed(t *testing.T, args ...string) (*exec.Cmd, *seqFeed, *watched) {
	t.Helper()
	cmd := command(t, runTimeout, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	_, stderr := startWatched(t, cmd)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, &seqFeed{t: t, w: in}, stderr
}

// stopWhileFeeding stops s with stop while f goes on feeding lines, so
// that send has something to write when the primary's FIN comes.
func stopWhileFeeding(t *testing.T, s *testnet.Sink, f *seqFeed, stop func(*testnet.Sink)) {
	t.Helper()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		stop(s)
	}()
	deadline := time.After(waitTimeout + 5*time.Second)
	for {
		select {
		case <-stopped:
			return
		case <-deadline:
			t.Fatal("the primary did not stop")
		default:
			f.lines(5)
		}
	}
}

// feedUntil feeds lines until re matches what send printed: what it
// prints may wait for a write.
func feedUntil(t *testing.T, f *seqFeed, stderr *watched, re *regexp.Regexp) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !re.MatchString(stderr.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v; the output was:\n%s", re, waitTimeout, stderr)
		}
		f.lines(5)
	}
}

// seqOf returns n for the line "seq n".
func seqOf(line string) (int, bool) {
	rest, ok := strings.CutPrefix(line, "seq ")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0
}

// tally checks what the sinks received of the lines "seq 0" to "seq n-1":
// no line torn or foreign, each connection's lines in the order sent. It
// returns the lines that never arrived and those that arrived twice or
// more.
func tally(t *testing.T, n int, sinks ...*testnet.Sink) (lost, dup []int) {
	t.Helper()
	seen := make([]int, n)
	for _, s := range sinks {
		if f := s.Fragments(); len(f) > 0 {
			t.Errorf("sink %s: torn lines %q", s.Addr(), f)
		}
		for c, lines := range s.LinesByConn() {
			last := -1
			for _, l := range lines {
				i, ok := seqOf(l)
				if !ok || i >= n {
					t.Errorf("sink %s, connection %d: unexpected line %q", s.Addr(), c, l)
					continue
				}
				if i <= last {
					t.Errorf("sink %s, connection %d: seq %d after seq %d", s.Addr(), c, i, last)
				}
				last = i
				seen[i]++
			}
		}
	}
	for i, k := range seen {
		switch {
		case k == 0:
			lost = append(lost, i)
		case k > 1:
			dup = append(dup, i)
		}
	}
	return lost, dup
}

// maxSeq returns the highest seq among s's lines, or -1.
func maxSeq(s *testnet.Sink) int {
	top := -1
	for _, l := range s.Lines() {
		if i, ok := seqOf(l); ok && i > top {
			top = i
		}
	}
	return top
}

// TestSendFailsOverWhenThePrimaryStops: with two ADDRESSes, send writes
// to the first; when it stops (its listener closed and its connections
// closed, gracefully or not) send moves to the second at once and carries
// on. Every line arrives at one or the other, whole, in order on each
// connection; at most gracefulMaxLost or abruptMaxLost are lost.
func TestSendFailsOverWhenThePrimaryStops(t *testing.T) {
	t.Parallel()
	t.Run("graceful", func(t *testing.T) {
		t.Parallel()
		testFailover(t, func(s *testnet.Sink) { s.StopGracefully(waitTimeout) }, gracefulMaxLost)
	})
	t.Run("abrupt", func(t *testing.T) {
		t.Parallel()
		testFailover(t, (*testnet.Sink).Stop, abruptMaxLost)
	})
}

func testFailover(t *testing.T, stop func(*testnet.Sink), maxLost int) {
	primary, standby := testnet.NewSink(t, "tcp"), testnet.NewSink(t, "tcp")
	p, s := "tcp://"+primary.Addr(), "tcp://"+standby.Addr()
	cmd, f, stderr := startFed(t, "send", "-v", "-backoff-base", "20ms", "-backoff-max", "200ms", p, s)

	if !primary.WaitAccepted(1, waitTimeout) {
		t.Fatalf("the primary accepted no connection; stderr:\n%s", stderr)
	}
	since := time.Now()
	f.lines(100)
	if !primary.WaitLines(100, waitTimeout) {
		t.Fatalf("before the stop: the primary received %d of 100 lines; stderr:\n%s", primary.LineCount(), stderr)
	}
	outliveProofAge(f, since)
	if standby.Accepted() > 0 {
		t.Errorf("the standby accepted a connection while the primary was up")
	}
	stopWhileFeeding(t, primary, f, stop)
	// send finds the primary gone when it next writes.
	feedUntil(t, f, stderr, regexp.MustCompile(`connpipe: disconnected from `+regexp.QuoteMeta(p)+`: .*; redialing at once\n(.*\n)*connpipe: connected to `+regexp.QuoteMeta(s)+`\n`))
	f.lines(100)
	f.w.Close()
	if code := waitExit(t, cmd, runTimeout); code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", code, stderr)
	}
	// send has closed its connection: once the standby has read it to its
	// end, it has all it will get.
	if !standby.WaitUntil(func() bool { return standby.OpenConns() == 0 }, waitTimeout) {
		t.Fatalf("the standby still has %d connections open after send exited", standby.OpenConns())
	}

	lost, dup := tally(t, f.sent, primary, standby)
	if len(lost) > maxLost {
		t.Errorf("%d of %d lines lost (at most %d may be): %v; stderr:\n%s", len(lost), f.sent, maxLost, lost, stderr)
	}
	if len(dup) > 0 {
		t.Errorf("lines received more than once: %v", dup)
	}
	if primary.LineCount() < 100 || standby.LineCount() < 100 {
		t.Errorf("the primary received %d lines and the standby %d; want at least 100 each", primary.LineCount(), standby.LineCount())
	}
	read, written, dropped, reconnects := summary(t, stderr.wait(t, waitTimeout)) // all of it: the reader may lag the exit
	if read != f.sent || written != f.sent || dropped != 0 || reconnects != 1 {
		t.Errorf("summary: %d read, %d written, %d dropped, %d reconnects; want %d, %d, 0, 1", read, written, dropped, reconnects, f.sent, f.sent)
	}
	if strings.Contains(stderr.String(), "switch") {
		t.Errorf("a failover is not a switch (a working connection replaced); stderr:\n%s", stderr)
	}
	t.Logf("%d lines: %d to the primary, %d to the standby, %d lost", f.sent, primary.LineCount(), standby.LineCount(), len(lost))
}

// TestSendFailsBackToThePrimary: once the primary is back, the next probe
// (-probe 200ms) finds it and send switches back, losing nothing; the
// lines sent after the switch all go to the primary.
func TestSendFailsBackToThePrimary(t *testing.T) {
	t.Parallel()
	primary, standby := testnet.NewSink(t, "tcp"), testnet.NewSink(t, "tcp")
	p, s := "tcp://"+primary.Addr(), "tcp://"+standby.Addr()
	cmd, f, stderr := startFed(t, "send", "-v", "-probe", "200ms", "-backoff-base", "20ms", "-backoff-max", "200ms", p, s)

	if !primary.WaitAccepted(1, waitTimeout) {
		t.Fatalf("the primary accepted no connection; stderr:\n%s", stderr)
	}
	since := time.Now()
	f.lines(50)
	if !primary.WaitLines(50, waitTimeout) {
		t.Fatalf("the primary received %d of 50 lines; stderr:\n%s", primary.LineCount(), stderr)
	}
	outliveProofAge(f, since)
	stopWhileFeeding(t, primary, f, func(s *testnet.Sink) { s.StopGracefully(waitTimeout) })
	_, at := stderr.waitFor(t, 0, regexp.MustCompile(`connpipe: connected to `+regexp.QuoteMeta(s)+`\n`), waitTimeout)
	f.lines(20)
	if err := primary.Start(); err != nil {
		t.Fatalf("restarting the primary: %v", err)
	}
	stderr.waitFor(t, at, regexp.MustCompile(`connpipe: switched to `+regexp.QuoteMeta(p)+` \(failback\)\n`), waitTimeout)
	mark := f.sent // the switch was made before it was reported
	f.lines(50)
	f.w.Close()
	if code := waitExit(t, cmd, runTimeout); code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", code, stderr)
	}
	for _, sink := range []*testnet.Sink{primary, standby} {
		if !sink.WaitUntil(func() bool { return sink.OpenConns() == 0 }, waitTimeout) {
			t.Fatalf("sink %s still has %d connections open after send exited", sink.Addr(), sink.OpenConns())
		}
	}

	lost, dup := tally(t, f.sent, primary, standby)
	if len(lost) > 0 || len(dup) > 0 {
		t.Errorf("a fail-back loses nothing and repeats nothing: lost %v, repeated %v", lost, dup)
	}
	if top := maxSeq(standby); top >= mark {
		t.Errorf("the standby received seq %d, sent after the switch back (from seq %d on, all go to the primary)", top, mark)
	}
	if maxSeq(primary) != f.sent-1 {
		t.Errorf("the primary's last line is seq %d, want %d", maxSeq(primary), f.sent-1)
	}
	read, written, dropped, reconnects := summary(t, stderr.wait(t, waitTimeout)) // all of it: the reader may lag the exit
	if read != f.sent || written != f.sent || dropped != 0 || reconnects != 1 {
		t.Errorf("summary: %d read, %d written, %d dropped, %d reconnects; want %d, %d, 0, 1 (a switch is no reconnect)", read, written, dropped, reconnects, f.sent, f.sent)
	}
	if !regexp.MustCompile(`, 1 reconnect, 1 switch, `).MatchString(stderr.String()) {
		t.Errorf("the summary does not count the switch; stderr:\n%s", stderr)
	}
}

// TestSendSpread: -policy spread with two ADDRESSes connects to one of
// them and delivers every line.
func TestSendSpread(t *testing.T) {
	t.Parallel()
	a, b := testnet.NewSink(t, "tcp"), testnet.NewSink(t, "tcp")
	lines := numbered("spread", 100)
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(lines)), "send", "-v", "-policy", "spread", "tcp://"+a.Addr(), "tcp://"+b.Addr())
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	want := fmt.Sprintf("connpipe: connecting to one of tcp://%s, tcp://%s (-policy spread)\n", a.Addr(), b.Addr())
	if !strings.Contains(r.stderr, want) || !regexp.MustCompile(`connpipe: connected to tcp://(`+regexp.QuoteMeta(a.Addr())+`|`+regexp.QuoteMeta(b.Addr())+`)\n`).MatchString(r.stderr) {
		t.Errorf("-v does not say where it connects; stderr:\n%s", r.stderr)
	}
	if !a.WaitUntil(func() bool { return a.LineCount()+b.LineCount() >= len(lines) }, waitTimeout) {
		t.Fatalf("the sinks received %d and %d of %d lines", a.LineCount(), b.LineCount(), len(lines))
	}
	if got := append(received(a), received(b)...); strings.Join(got, "\n") != strings.Join(lines, "\n") {
		t.Errorf("received lines differ from those sent at line %d", firstDiff(got, lines))
	}
	if read, written, _, _ := summary(t, r.stderr); read != 100 || written != 100 {
		t.Errorf("summary: %s", r.stderr)
	}
}

// TestSendSeveralAddressesUsage: mixing schemes, repeating an ADDRESS and
// the flags of several ADDRESSes used wrongly are usage errors: one line,
// status 2, nothing started.
func TestSendSeveralAddressesUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"tcp://127.0.0.1:1", "udp://127.0.0.1:2"}, `mixed schemes: "udp://127.0.0.1:2" is udp://, but the first ADDRESS, "tcp://127.0.0.1:1", is tcp://: every ADDRESS of one send must use the same scheme`},
		{[]string{"tls://127.0.0.1:1", "tcp://127.0.0.1:2"}, `mixed schemes: "tcp://127.0.0.1:2" is tcp://, but the first ADDRESS, "tls://127.0.0.1:1", is tls://`},
		{[]string{"tls://127.0.0.1:1", "127.0.0.1:2"}, `mixed schemes: "127.0.0.1:2" (host:port, so tcp://) is tcp://, but the first ADDRESS, "tls://127.0.0.1:1", is tls://`},
		{[]string{"unix:///tmp/a.sock", "tcp://127.0.0.1:2"}, `mixed schemes: "tcp://127.0.0.1:2" is tcp://, but the first ADDRESS, "unix:///tmp/a.sock", is unix://`},
		{[]string{"127.0.0.1:1", "TCP://127.0.0.1:1"}, `unexpected argument "TCP://127.0.0.1:1": it repeats ADDRESS "127.0.0.1:1"`},
		{[]string{"tcp://127.0.0.1:1", "tcp://127.0.0.1:0"}, `port 0 in "tcp://127.0.0.1:0"`},
		{[]string{"tls://127.0.0.1:1", "tls://:2"}, `missing host in "tls://:2"`},
		{[]string{"tcp://127.0.0.1:1", "htp://127.0.0.1:2"}, `unknown scheme "htp"`},
		{[]string{"-policy", "spread", "tcp://127.0.0.1:1"}, "-policy applies only with several ADDRESSes"},
		{[]string{"-probe", "1s", "-stagger", "0s", "tcp://127.0.0.1:1"}, "-probe and -stagger apply only with several ADDRESSes"},
		{[]string{"-policy", "random", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"}, `invalid value "random" for -policy: use -policy priority (the default) or -policy spread`},
		{[]string{"-policy", "spread", "-probe", "1s", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"}, "-policy spread does not move back"},
		{[]string{"-probe", "0s", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"}, "-probe must be positive"},
		{[]string{"-stagger", "-1s", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"}, "-stagger must not be negative"},
		{[]string{"-max-age", "-1s", "tcp://127.0.0.1:1"}, "-max-age must not be negative"},
		{[]string{"-ca", "ca.pem", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"}, `-ca applies only to tls:// addresses, not "tcp://127.0.0.1:1"`},
	} {
		var stdout, stderr strings.Builder
		e := &env{stdin: strings.NewReader("must not be sent\n"), stdout: &stdout, stderr: &stderr}
		args := append([]string{"send"}, tt.args...)
		code := run(context.Background(), args, e)
		if code != exitUsage || strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), "connpipe: ") || stdout.Len() != 0 {
			t.Errorf("connpipe %s: status %d, stdout %q, stderr %q; want %d and one line", strings.Join(args, " "), code, stdout.String(), stderr.String(), exitUsage)
		}
		if !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("connpipe %s: stderr %q, want it to contain %q", strings.Join(args, " "), stderr.String(), tt.want)
		}
	}
	// Through the binary, the status the shell sees.
	r := runBinary(t, runTimeout, strings.NewReader("must not be sent\n"), "send", "tcp://127.0.0.1:1", "udp://127.0.0.1:2")
	if r.code != exitUsage || !strings.Contains(r.stderr, "mixed schemes") {
		t.Errorf("exit status %d, stderr %q; want %d and the mixed schemes", r.code, r.stderr, exitUsage)
	}
}

// TestSendSeveralGivesUpOnlyWhenEachIsPermanent: a primary that refuses
// connections may come back, so a standby whose certificate does not
// verify does not make send give up: it keeps trying until the close
// timeout. When every ADDRESS fails for good, it gives up at once.
func TestSendSeveralGivesUpOnlyWhenEachIsPermanent(t *testing.T) {
	t.Parallel()
	server, _ := testnet.SelfSignedTLS(t)
	bad := testnet.NewSink(t, "tcp", testnet.WithTLS(server)) // no -ca: its certificate does not verify
	bad2 := testnet.NewSink(t, "tcp", testnet.WithTLS(server))
	dead := freePort(t)

	r := runBinary(t, runTimeout, strings.NewReader("x\n"), "send", "-v", "-close-timeout", "1s", "-backoff-base", "50ms", "-backoff-max", "100ms", "tls://"+dead, "tls://"+bad.Addr())
	if r.code != 1 || strings.Contains(r.stderr, "giving up") || !strings.Contains(r.stderr, "1 still queued when the 1s close timeout ran out") {
		t.Errorf("unreachable primary, untrusted standby: exit status %d; want 1 after the close timeout, not given up; stderr:\n%s", r.code, r.stderr)
	}
	if !regexp.MustCompile(`connpipe: disconnected: all 2 endpoints failed: ` + regexp.QuoteMeta(dead) + `: .*connection refused; ` + regexp.QuoteMeta(bad.Addr()) + `: tls: failed to verify certificate: .*; next dial in`).MatchString(r.stderr) {
		t.Errorf("-v does not show both failures; stderr:\n%s", r.stderr)
	}
	if r.took < time.Second {
		t.Errorf("exited after %v, before the 1s close timeout", r.took)
	}

	r = runBinary(t, runTimeout, strings.NewReader("x\n"), "send", "-close-timeout", "1m", "tls://"+bad.Addr(), "tls://"+bad2.Addr())
	want := fmt.Sprintf("connpipe: cannot connect to any of tls://%s, tls://%s: all 2 endpoints failed: ", bad.Addr(), bad2.Addr())
	if r.code != 1 || r.took > 30*time.Second || !strings.Contains(r.stderr, want) ||
		!strings.Contains(r.stderr, "connpipe: retrying cannot fix this: giving up; the server's certificate is not signed by a CA this machine trusts") {
		t.Errorf("two untrusted endpoints: exit status %d after %v; want 1 at once, with %q and the hint; stderr:\n%s", r.code, r.took, want, r.stderr)
	}
	wantGaveUpSummary(t, "two untrusted endpoints", r.stderr)
	if bad.LineCount()+bad2.LineCount() > 0 {
		t.Errorf("a line was sent to an unverified server")
	}
}

// TestSendTLSServerNamePerAddress: each tls:// ADDRESS is verified for
// its own host. The standby's certificate is valid for 127.0.0.1 alone;
// the primary, named localhost, is down: send must not verify the
// standby for "localhost".
func TestSendTLSServerNamePerAddress(t *testing.T) {
	t.Parallel()
	server := ipOnlyTLS(t, net.IPv4(127, 0, 0, 1))
	standby := testnet.NewSink(t, "tcp", testnet.WithTLS(server))
	ca := writeCA(t, server)
	_, port, err := net.SplitHostPort(freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	lines := numbered("tls", 20)
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(lines)), "send", "-ca", ca, "-close-timeout", "5s", "-backoff-base", "50ms", "-backoff-max", "100ms",
		"tls://localhost:"+port, "tls://"+standby.Addr())
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	if !standby.WaitLines(len(lines), waitTimeout) || strings.Join(received(standby), "\n") != strings.Join(lines, "\n") {
		t.Errorf("the standby received %q", received(standby))
	}
}

// ipOnlyTLS returns a server configuration with a self-signed certificate
// valid for ip alone: no name, no other address.
func ipOnlyTLS(t *testing.T, ip net.IP) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "connpipe test, " + ip.String() + " only"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{ip},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestDescribeSeveral: what -v says with several ADDRESSes; with one it
// says what it always did.
func TestDescribeSeveral(t *testing.T) {
	a := endpoint{Scheme: "tcp", Network: "tcp", Address: "a:514", Host: "a", Port: 514}
	b := endpoint{Scheme: "tcp", Network: "tcp", Address: "b:514", Host: "b", Port: 514}
	lost := errors.New("conn: peer closed the connection")
	refused := errors.New("connect: connection refused")
	round := &conn.EndpointsError{Endpoints: []string{"a:514", "b:514"}, Errs: []error{refused, refused}}
	for _, tt := range []struct {
		eps  targets
		ev   conn.Event
		want string
	}{
		{targets{a, b}, conn.Event{State: conn.Connected, Endpoint: "b:514"}, "connected to tcp://b:514"},
		{targets{a, b}, conn.Event{State: conn.Connected, Endpoint: "a:514", Switch: conn.Failback}, "switched to tcp://a:514 (failback)"},
		{targets{a, b}, conn.Event{State: conn.Connected, Endpoint: "b:514", Switch: conn.Rotation}, "switched to tcp://b:514 (rotation)"},
		{targets{a, b}, conn.Event{State: conn.Disconnected, Endpoint: "a:514", Err: lost}, "disconnected from tcp://a:514: conn: peer closed the connection; redialing at once"},
		{targets{a, b}, conn.Event{State: conn.Disconnected, Err: round, Attempt: 1, Wait: time.Second},
			"disconnected: all 2 endpoints failed: a:514: connect: connection refused; b:514: connect: connection refused; next dial in 1s (attempt 2)"},
		{targets{a}, conn.Event{State: conn.Connected, Endpoint: "a:514"}, "connected to tcp://a:514"},
		{targets{a}, conn.Event{State: conn.Disconnected, Endpoint: "a:514", Err: lost}, "disconnected: conn: peer closed the connection; redialing at once"},
	} {
		if got := describeEvent(tt.ev, tt.eps); got != tt.want {
			t.Errorf("describeEvent(%+v)\n got %q\nwant %q", tt.ev, got, tt.want)
		}
	}

	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		v    statusView
		want string
	}{
		{statusView{state: conn.Connecting}, "connecting to tcp://a:514, tcp://b:514 · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped"},
		{statusView{state: conn.Connected, endpoint: "a:514", reconnects: 1, switches: 2},
			"connected to tcp://a:514 · 0 lines 0 B · 0/s 0 B/s · 1 reconnect · 2 switches · 0 dropped"},
		{statusView{state: conn.Disconnected, lastErr: round, event: &seenEvent{Event: conn.Event{State: conn.Disconnected, Err: round, Attempt: 1, Wait: time.Second}, at: now}},
			"disconnected: a:514: connect: connection refused; b:514: connect: connection refused · next dial in 1.0s (attempt 2) · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped"},
		{statusView{state: conn.Disconnected, lastErr: lost, event: &seenEvent{Event: conn.Event{State: conn.Disconnected, Err: lost, Endpoint: "a:514"}, at: now}},
			"disconnected from tcp://a:514: conn: peer closed the connection · dialing · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped"},
	} {
		tt.v.now, tt.v.ep, tt.v.eps = now, a, targets{a, b}
		if got := tt.v.String(); got != tt.want {
			t.Errorf("status line:\n got %q\nwant %q", got, tt.want)
		}
	}
}
