package main

import (
	"bufio"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// Generous bounds: the machine may be slow, and the binary may run under
// the race detector.
const (
	runTimeout  = 60 * time.Second
	waitTimeout = 20 * time.Second
)

// numbered returns lines "prefix 0" to "prefix n-1".
func numbered(prefix string, n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = prefix + " " + strconv.Itoa(i)
	}
	return lines
}

func joinLines(lines []string) string { return strings.Join(lines, "\n") + "\n" }

// received returns the sink's lines in the order the client sent them:
// connection after connection, in the order they were accepted.
func received(s *testnet.Sink) []string {
	var all []string
	for _, lines := range s.LinesByConn() {
		all = append(all, lines...)
	}
	return all
}

var summaryRE = regexp.MustCompile(`connpipe: ([\d,]+) lines? read \([^)]*\), ([\d,]+) written, ([\d,]+) dropped, ([\d,]+) reconnects?, `)

// summary parses send's summary line: lines read, written, dropped,
// reconnects.
func summary(t *testing.T, stderr string) (read, written, dropped, reconnects int) {
	t.Helper()
	m := summaryRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no summary on stderr:\n%s", stderr)
	}
	n := func(s string) int {
		v, err := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return n(m[1]), n(m[2]), n(m[3]), n(m[4])
}

// TestSendAcrossGracefulRestart feeds send slowly through a pipe while the
// sink restarts gracefully: every line arrives once, in order.
func TestSendAcrossGracefulRestart(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	cmd := command(t, runTimeout, "send", "-backoff-base", "20ms", "-backoff-max", "200ms", "tcp://"+sink.Addr())
	pr, pw := io.Pipe()
	defer pw.Close()
	cmd.Stdin = pr
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var sent []string
	send := func(n int) {
		for range n {
			line := fmt.Sprintf("line %d", len(sent))
			if _, err := io.WriteString(pw, line+"\n"); err != nil {
				t.Fatalf("writing to connpipe: %v", err)
			}
			sent = append(sent, line)
			time.Sleep(2 * time.Millisecond) // pacing: a slow producer, not synchronisation
		}
	}

	send(100)
	if !sink.WaitLines(100, waitTimeout) {
		t.Fatalf("before the restart: the sink received %d of 100 lines", sink.LineCount())
	}
	restarted := make(chan error, 1)
	go func() { restarted <- sink.RestartGracefully(5*time.Second, 200*time.Millisecond) }()
	// Keep the stream going through the stop, the downtime and the start.
	deadline := time.After(waitTimeout)
feed:
	for {
		select {
		case err := <-restarted:
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			break feed
		case <-deadline:
			t.Fatal("the sink did not restart")
		default:
			send(5)
		}
	}
	during := len(sent) - 100
	send(100)
	pw.Close()

	if code := waitExit(t, cmd, runTimeout); code != 0 {
		t.Errorf("exit status %d, want 0; stderr:\n%s", code, stderr.String())
	}
	if !sink.WaitLines(len(sent), waitTimeout) {
		t.Fatalf("the sink received %d of %d lines", sink.LineCount(), len(sent))
	}
	if got := received(sink); !slices.Equal(got, sent) {
		t.Errorf("received %d lines, not the %d sent in order; first difference at %d",
			len(got), len(sent), firstDiff(got, sent))
	}
	read, written, dropped, reconnects := summary(t, stderr.String())
	if read != len(sent) || written != len(sent) || dropped != 0 {
		t.Errorf("summary: %d read, %d written, %d dropped; want %d, %d, 0", read, written, dropped, len(sent), len(sent))
	}
	if reconnects < 1 || sink.Accepted() < 2 {
		t.Errorf("summary says %d reconnects, sink accepted %d connections: want a reconnect", reconnects, sink.Accepted())
	}
	t.Logf("%d lines, %d during the restart, %d connections; %s", len(sent), during, sink.Accepted(), strings.TrimSpace(stderr.String()))
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestSendUnix(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "unix")
	lines := numbered("unix", 500)
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(lines)), "send", "unix://"+sink.Addr())
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	if !sink.WaitLines(len(lines), waitTimeout) {
		t.Fatalf("the sink received %d of %d lines", sink.LineCount(), len(lines))
	}
	if got := received(sink); !slices.Equal(got, lines) {
		t.Errorf("received lines differ from those sent at line %d", firstDiff(got, lines))
	}
	if read, written, _, _ := summary(t, r.stderr); read != 500 || written != 500 {
		t.Errorf("summary: %s", r.stderr)
	}
}

func TestSendUDP(t *testing.T) {
	t.Parallel()
	sink := testnet.NewUDPSink(t)
	lines := numbered("udp", 300)
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(lines)), "send", "udp://"+sink.Addr())
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	// Datagrams carry whole lines, packed; wait for each new one until the
	// lines are complete.
	var got []string
	for n := 1; ; n = sink.Count() + 1 {
		got = strings.Split(strings.TrimSuffix(strings.Join(sink.Datagrams(), ""), "\n"), "\n")
		if len(got) >= len(lines) {
			break
		}
		if !sink.WaitCount(n, waitTimeout) {
			t.Fatalf("received %d of %d lines", len(got), len(lines))
		}
	}
	if !slices.Equal(got, lines) {
		t.Errorf("received lines differ from those sent at line %d", firstDiff(got, lines))
	}
	for _, d := range sink.Datagrams() {
		if !strings.HasSuffix(d, "\n") || len(d) > 1432 {
			t.Errorf("datagram of %d bytes %q: want whole lines, at most 1432 bytes", len(d), d[:min(len(d), 40)])
		}
	}
}

func TestSendTLS(t *testing.T) {
	t.Parallel()
	server, _ := testnet.SelfSignedTLS(t)
	sink := testnet.NewSink(t, "tcp", testnet.WithTLS(server))
	ca := writeCA(t, server)
	lines := numbered("tls", 100)
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(lines)), "send", "-ca", ca, "tls://"+sink.Addr())
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	if !sink.WaitLines(len(lines), waitTimeout) || !slices.Equal(received(sink), lines) {
		t.Fatalf("the sink received %d of %d lines", sink.LineCount(), len(lines))
	}

	// Without the CA the certificate is not trusted: retrying cannot fix
	// that, so send gives up at once (not after the close timeout),
	// delivers nothing and says why.
	r = runBinary(t, runTimeout, strings.NewReader("secret\n"), "send", "-close-timeout", "60s", "tls://"+sink.Addr())
	for _, want := range []string{
		"connpipe: cannot connect to tls://" + sink.Addr() + ": tls: failed to verify certificate: x509: certificate signed by unknown authority\n",
		"connpipe: retrying cannot fix this: giving up; the server's certificate is not signed by a CA this machine trusts: give its CA certificate with -ca FILE\n",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("untrusted certificate: stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	wantGaveUpSummary(t, "untrusted certificate", r.stderr)
	if r.code != 1 || r.took > 30*time.Second {
		t.Errorf("untrusted certificate: exit status %d after %v; want 1, at once", r.code, r.took)
	}
	if slices.Contains(sink.Lines(), "secret") {
		t.Error("a line was sent to an unverified server")
	}
}

// writeCA writes the certificate of server, a self-signed one, to a PEM
// file for send -ca, and returns its path.
func writeCA(t *testing.T, server *tls.Config) string {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	block := &pem.Block{Type: "CERTIFICATE", Bytes: server.Certificates[0].Certificate[0]}
	if err := os.WriteFile(ca, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// freePort returns a TCP port on 127.0.0.1 that nobody listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestSendToADeadAddressExits1(t *testing.T) {
	t.Parallel()
	addr := freePort(t)
	r := runBinary(t, runTimeout, strings.NewReader("a\nb\nc"), "send", "-close-timeout", "300ms", "tcp://"+addr)
	if r.code != 1 {
		t.Errorf("exit status %d, want 1", r.code)
	}
	for _, want := range []string{
		"3 lines read",
		"0 written, 3 dropped",
		"3 of 3 lines not delivered: 3 still queued when the 300ms close timeout ran out",
		"connection refused",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if r.took > 10*time.Second {
		t.Errorf("took %v with -close-timeout 300ms", r.took)
	}
}

func TestSendTooLongLines(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	long := strings.Repeat("x", 3000)
	huge := strings.Repeat("y", 200<<10) // longer than the input buffer too
	in := "first\n" + long + "\n" + "middle\n" + huge + "\n" + "" + "\n" + "last without newline"
	r := runBinary(t, runTimeout, strings.NewReader(in), "send", "-buffer", "2k", "tcp://"+sink.Addr())
	if r.code != 1 || !strings.Contains(r.stderr, "2 of 6 lines not delivered: 2 longer than 2.0 KiB") {
		t.Errorf("exit status %d, want 1 and the two long lines reported; stderr:\n%s", r.code, r.stderr)
	}
	want := []string{"first", "middle", "", "last without newline"}
	if !sink.WaitLines(len(want), waitTimeout) || !slices.Equal(received(sink), want) {
		t.Errorf("received %q, want %q", received(sink), want)
	}
}

// TestBadInput: every mistake on the command line is one line on stderr and
// exit status 2, and nothing reaches the sink.
func TestBadInput(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	addr := sink.Addr()
	missingCA := filepath.Join(t.TempDir(), "missing.pem")
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"send", "htp://" + addr}, `connpipe: unknown scheme "htp" in "htp://` + addr + `": use tcp://, udp://, unix://, tls://, relp:// or host:port`},
		{[]string{"send", "127.0.0.1"}, `missing port in "127.0.0.1"`},
		{[]string{"send", "tcp://127.0.0.1"}, `missing port in "tcp://127.0.0.1"`},
		{[]string{"send", "unix://tmp/s.sock"}, `relative socket path in "unix://tmp/s.sock": write unix:///tmp/s.sock for /tmp/s.sock, or unix://./tmp/s.sock for a path relative to the current directory`},
		{[]string{"send", "-ca", notPEM, "tcp://" + addr}, `-ca applies only to tls:// addresses, not "tcp://`},
		{[]string{"send", "-servername", "x", "-insecure-skip-verify", "tcp://" + addr}, "-servername and -insecure-skip-verify apply only to tls://"},
		{[]string{"send", "-cert", notPEM, "tls://" + addr}, "-cert and -key go together"},
		{[]string{"send", "-ca", notPEM, "-insecure-skip-verify", "tls://" + addr}, "-ca and -insecure-skip-verify contradict each other"},
		{[]string{"send", "tls://:6514"}, "tls:// needs the server's name"},
		{[]string{"send", "-bogus", "tcp://" + addr}, "flag provided but not defined: -bogus (connpipe send -h for help)"},
		{[]string{"send", "tcp://" + addr, "-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"send", "-dial-timeout", "soon", "tcp://" + addr}, `invalid value "soon" for flag -dial-timeout`},
		{[]string{"send", "-buffer", "4X", "tcp://" + addr}, `unknown unit "X"`},
		{[]string{"send", "-full", "maybe", "tcp://" + addr}, `invalid value "maybe" for -full: use -full wait (the default) or -full drop`},
		{[]string{"send", "-full", "drop", "-wait", "1s", "tcp://" + addr}, "-wait limits how long -full wait waits"},
		{[]string{"send", "-wait", "-1s", "tcp://" + addr}, "-wait must not be negative"},
		{[]string{"send", "-backoff-base", "2m", "tcp://" + addr}, "want 0 < -backoff-base"},
		{[]string{"send"}, "missing ADDRESS: connpipe send [flags] ADDRESS, e.g. connpipe send tcp://localhost:5000"},
		{[]string{"send", "tcp://" + addr, "tcp://" + addr}, "unexpected argument"},
		{[]string{"listen"}, "missing ADDRESS"},
		{[]string{"listen", "-cert", notPEM, "tcp://127.0.0.1:0"}, "-cert applies only to tls://"},
		{[]string{"listen", "-cert", notPEM, "tls://127.0.0.1:0"}, "-cert and -key go together"},
		{[]string{"listen", "5000"}, `"5000" is a port without a host: write 127.0.0.1:5000 (or :5000 to listen on every interface)`},
		{[]string{"demo", "tcp://" + addr}, "demo takes no ADDRESS"},
		{[]string{"demo", "-duration", "-1s"}, "-duration must be between"},
		{[]string{"frobnicate", "tcp://" + addr}, `connpipe: unknown command "frobnicate": use send, listen or demo (connpipe -h for help)`},
		{[]string{"-v", "send"}, "-v comes before a command"},
		{[]string{"help", "nothing"}, `no help for "nothing"`},
		{nil, "missing command: use send, listen or demo"},
	} {
		r := runBinary(t, runTimeout, strings.NewReader("must not be sent\n"), tt.args...)
		name := strings.Join(tt.args, " ")
		if r.code != 2 {
			t.Errorf("connpipe %s: exit status %d, want 2", name, r.code)
		}
		if !strings.HasPrefix(r.stderr, "connpipe: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
			t.Errorf("connpipe %s: stderr %q, want one line starting with \"connpipe: \"", name, r.stderr)
		}
		if !strings.Contains(r.stderr, tt.want) {
			t.Errorf("connpipe %s: stderr %q, want it to contain %q", name, r.stderr, tt.want)
		}
		if r.stdout != "" {
			t.Errorf("connpipe %s: stdout %q, want nothing", name, r.stdout)
		}
	}
	// A file that cannot be read is not a mistake on the command line:
	// status 1, one line, and still nothing sent.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"send", "-file", filepath.Join(t.TempDir(), "nope"), "tcp://" + addr}, "connpipe: cannot read -file: open "},
		{[]string{"send", "-ca", missingCA, "tls://" + addr}, "connpipe: cannot read -ca file: open " + missingCA},
		{[]string{"send", "-ca", notPEM, "tls://" + addr}, "holds no PEM certificate"},
		{[]string{"send", "-cert", notPEM, "-key", notPEM, "tls://" + addr}, "cannot load the client certificate"},
		{[]string{"listen", "-cert", notPEM, "-key", notPEM, "tls://127.0.0.1:0"}, "cannot load the server certificate"},
		{[]string{"listen", "-ca", missingCA, "tls://127.0.0.1:0"}, "cannot read -ca file"},
	} {
		r := runBinary(t, runTimeout, strings.NewReader("must not be sent\n"), tt.args...)
		name := strings.Join(tt.args, " ")
		if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
			t.Errorf("connpipe %s: exit status %d, stdout %q, stderr %q; want 1 and one line with %q", name, r.code, r.stdout, r.stderr, tt.want)
		}
	}
	// The processes have exited: a connection they made would have been
	// accepted by now. This wait is for something that must not happen.
	if sink.WaitAccepted(1, 200*time.Millisecond) {
		t.Errorf("the sink accepted %d connections and received %q: a bad command line sent something", sink.Accepted(), sink.Lines())
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		r := runBinary(t, runTimeout, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "tail -F app.log | connpipe send tcp://logs.internal:5000") || r.stderr != "" {
			t.Errorf("connpipe %s: exit status %d, stdout:\n%s\nstderr:\n%s", args[0], r.code, r.stdout, r.stderr)
		}
	}
	for _, args := range [][]string{{"send", "-h"}, {"help", "send"}} {
		r := runBinary(t, runTimeout, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage: connpipe send [flags] ADDRESS") || !strings.Contains(r.stdout, "-close-timeout") {
			t.Errorf("connpipe %s: exit status %d, stdout:\n%s", strings.Join(args, " "), r.code, r.stdout)
		}
	}
}

func TestDemo(t *testing.T) {
	t.Parallel()
	r := runBinary(t, runTimeout, nil, "demo", "-duration", "2s")
	if r.code != 0 {
		t.Errorf("exit status %d, want 0", r.code)
	}
	for _, re := range []string{`silently lost\s+0\s`, `torn\s+0\s`, `out of order\s+0\s`, `reconnects\s+[1-9]`, `\nOK: `} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("the report does not match %s", re)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	t.Logf("demo -duration 2s took %v", r.took.Round(time.Millisecond))
}

// startListen starts connpipe listen on address and returns the address it
// says it listens on, and its stdout, line by line.
func startListen(t *testing.T, args ...string) (cmd *exec.Cmd, addr string, lines <-chan string) {
	t.Helper()
	cmd, addr, stdout, _ := startListenRaw(t, args...)
	out := make(chan string, 1000)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out <- sc.Text()
		}
	}()
	return cmd, addr, out
}

// startListenRaw starts connpipe listen on address and returns the
// address it says it listens on, its stdout (a pipe the caller may close),
// and its stderr.
func startListenRaw(t *testing.T, args ...string) (cmd *exec.Cmd, addr string, stdout io.ReadCloser, stderr *watched) {
	t.Helper()
	cmd = command(t, runTimeout, append([]string{"listen"}, args...)...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	cmd.Stdout = w
	_, stderr = startWatched(t, cmd)
	w.Close()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		t.Logf("listen's stderr: %q", stderr.wait(t, waitTimeout))
	})
	m, _ := stderr.waitFor(t, 0, regexp.MustCompile(`listening on \w+://(\S+)`), waitTimeout)
	return cmd, m[1], r, stderr
}

// collect reads n lines from lines, within waitTimeout.
func collect(t *testing.T, lines <-chan string, n int) []string {
	t.Helper()
	var got []string
	timeout := time.After(waitTimeout)
	for len(got) < n {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("listen's stdout ended after %q", got)
			}
			got = append(got, l)
		case <-timeout:
			t.Fatalf("got %d of %d lines: %q", len(got), n, got)
		}
	}
	return got
}

func TestListenTCP(t *testing.T) {
	t.Parallel()
	cmd, addr, out := startListen(t, "tcp://127.0.0.1:0")
	a, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// A line split across writes comes out whole; lines of two clients
	// never mix.
	if _, err := io.WriteString(a, "a1\na2 is "); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, out, 1); got[0] != "a1" {
		t.Fatalf("got %q, want a1", got)
	}
	if _, err := io.WriteString(b, "b1\nb2\n"); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, out, 2); !slices.Equal(got, []string{"b1", "b2"}) {
		t.Fatalf("got %q, want b1 b2: client a's half line must wait for its end", got)
	}
	if _, err := io.WriteString(a, "whole\nunterminated"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if got := collect(t, out, 2); !slices.Equal(got, []string{"a2 is whole", "unterminated"}) {
		t.Fatalf("got %q", got)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGTERM, "")
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("the port still accepts connections after listen exited")
	}
}

func TestListenUDPCount(t *testing.T) {
	t.Parallel()
	cmd, addr, out := startListen(t, "-count", "udp://127.0.0.1:0")
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "x\ny\n"); err != nil {
		t.Fatal(err)
	}
	// Within a few seconds a report counts them.
	timeout := time.After(waitTimeout)
	for done := false; !done; {
		select {
		case l := <-out:
			done = strings.Contains(l, "total 2 lines")
		case <-timeout:
			t.Fatal("no report of the two lines")
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, "")
}

func TestListenUnixThenSend(t *testing.T) {
	t.Parallel()
	path := testnet.FreeUnixPath(t)
	cmd, addr, out := startListen(t, "unix://"+path)
	if addr != path {
		t.Fatalf("listening on %q, want %q", addr, path)
	}
	lines := numbered("through", 50)
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(lines)), "send", "unix://"+path)
	if r.code != 0 {
		t.Fatalf("send: exit status %d; stderr:\n%s", r.code, r.stderr)
	}
	if got := collect(t, out, len(lines)); !slices.Equal(got, lines) {
		t.Errorf("got %q", got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGTERM, "")
	if _, err := os.Stat(path); err == nil {
		t.Error("the socket file is still there")
	}
}
