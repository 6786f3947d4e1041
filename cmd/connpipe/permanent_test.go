package main

import (
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// TestSendGivesUpOnPermanentErrors: errors that retrying cannot fix end
// send at once, with status 1, the error, and what to do about it.
func TestSendGivesUpOnPermanentErrors(t *testing.T) {
	t.Parallel()
	server, _ := testnet.SelfSignedTLS(t)
	sink := testnet.NewSink(t, "tcp", testnet.WithTLS(server))
	ca := writeCA(t, server)

	// A server that answers in plain text: not TLS.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		for {
			c, err := plain.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "220 hello, this is not TLS\r\n")
			c.Close()
		}
	}()

	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"wrong name", []string{"-ca", ca, "-servername", "collector.example", "tls://" + sink.Addr()}, []string{
			"connpipe: cannot connect to tls://" + sink.Addr() + ": tls: failed to verify certificate: x509: certificate is valid for localhost, not collector.example\n",
			`connpipe: retrying cannot fix this: giving up; the server's certificate is not valid for "collector.example": give a name it is valid for with -servername NAME` + "\n",
		}},
		{"not TLS", []string{"tls://" + plain.Addr().String()}, []string{
			"connpipe: cannot connect to tls://" + plain.Addr().String() + ": tls: first record does not look like a TLS handshake\n",
			"connpipe: retrying cannot fix this: giving up; the server does not speak TLS: for a plain connection use tcp://\n",
		}},
	} {
		r := runBinary(t, runTimeout, strings.NewReader("secret\n"), append([]string{"send", "-close-timeout", "1m"}, tt.args...)...)
		for _, want := range tt.want {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", tt.name, want, r.stderr)
			}
		}
		wantGaveUpSummary(t, tt.name, r.stderr)
		if r.code != 1 || r.took > 30*time.Second {
			t.Errorf("%s: exit status %d after %v; want 1, at once", tt.name, r.code, r.took)
		}
	}
	if sink.LineCount() > 0 {
		t.Errorf("the sink received %q", sink.Lines())
	}
}

// wantGaveUpSummary checks the summary of a run that gave up with one
// line of input: send may give up before it has read the line, as it
// offers it to the BatchWriter, or once it is queued; it is never written,
// and it is accounted for.
func wantGaveUpSummary(t *testing.T, name, stderr string) {
	t.Helper()
	read, written, dropped, _ := summary(t, stderr)
	if read > 1 || written != 0 || dropped != read {
		t.Errorf("%s: summary: %d read, %d written, %d dropped; want the line, if read, dropped:\n%s", name, read, written, dropped, stderr)
	}
	if read == 1 && !regexp.MustCompile(`1 of 1 line not delivered: 1 (still queued when connpipe gave up|read but not yet queued when the input was stopped)\n`).MatchString(stderr) {
		t.Errorf("%s: the summary does not say why the line was not delivered:\n%s", name, stderr)
	}
}

// TestSendVerboseKeepsTryingAnUnknownName: -v says at once that the name
// does not resolve, that connpipe keeps trying, and when it will next; it
// does keep trying until the close timeout.
func TestSendVerboseKeepsTryingAnUnknownName(t *testing.T) {
	t.Parallel()
	r := runBinary(t, runTimeout, strings.NewReader("x\n"), "send", "-v", "-dial-timeout", "5s", "-backoff-base", "100ms", "-backoff-max", "100ms", "-close-timeout", "1s", "tcp://nosuch.invalid:5000")
	// Without a resolver the lookup fails otherwise, but names the host.
	if !regexp.MustCompile(`connpipe: disconnected: dial tcp: lookup nosuch\.invalid.*; next dial in \d+ms \(attempt 2\)`).MatchString(r.stderr) {
		t.Errorf("-v does not show the failed lookup and the next dial:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "no such host") && !strings.Contains(r.stderr, "the name does not resolve: connpipe keeps trying, in case it is registered later") {
		t.Errorf("-v does not say that connpipe keeps trying:\n%s", r.stderr)
	}
	if r.code != 1 || !strings.Contains(r.stderr, "1 still queued when the 1s close timeout ran out") || strings.Contains(r.stderr, "giving up") {
		t.Errorf("exit status %d; want 1 after the close timeout, not given up; stderr:\n%s", r.code, r.stderr)
	}
}
