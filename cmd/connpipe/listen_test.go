package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestListenStopDoesNotPrintATornLine: a line cut short by the stop is not
// printed as if it were whole; stderr shows its start. A client's last line
// ended by closing the connection is whole, and printed with a newline.
func TestListenStopDoesNotPrintATornLine(t *testing.T) {
	t.Parallel()
	cmd, addr, stdout, stderr := startListenRaw(t, "tcp://127.0.0.1:0")
	out := watch(stdout)
	closed, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(closed, "first\nlast, unterminated"); err != nil {
		t.Fatal(err)
	}
	closed.Close()
	cut, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cut.Close()
	if _, err := io.WriteString(cut, "whole\npartial, still coming"); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, 0, regexp.MustCompile(`(?m)^whole\n`), waitTimeout)
	out.waitFor(t, 0, regexp.MustCompile(`(?m)^last, unterminated\n`), waitTimeout)
	// The partial line has been read too, unless the kernel is slow to
	// hand it over; either way it must not be printed.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, stderr.String())
	got := strings.Split(out.wait(t, waitTimeout), "\n")
	slices.Sort(got)
	if want := []string{"", "first", "last, unterminated", "whole"}; !slices.Equal(got, want) {
		t.Errorf("stdout lines %q, want %q (and each ending in a newline)", got, want)
	}
	errText := stderr.wait(t, waitTimeout)
	if strings.Contains(errText, "partial") &&
		!regexp.MustCompile(`connpipe: a line from 127\.0\.0\.1:\d+ was cut short when listen was stopped; not printed: "partial, still coming"\n`).MatchString(errText) {
		t.Errorf("stderr does not say properly that the partial line was not printed:\n%s", errText)
	}
	if !regexp.MustCompile(`connpipe: stopped \(SIGINT\): received 3 lines \(\d+ B\) from 2 clients(; 1 line cut short)?\n$`).MatchString(errText) {
		t.Errorf("stderr does not end with the summary:\n%s", errText)
	}
}

// TestListenResetMidLine: a client that resets its connection in the
// middle of a line gets that line reported, not printed.
func TestListenResetMidLine(t *testing.T) {
	t.Parallel()
	cmd, addr, stdout, stderr := startListenRaw(t, "tcp://127.0.0.1:0")
	out := watch(stdout)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "one\ntwo, cut"); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, 0, regexp.MustCompile(`^one\n`), waitTimeout)
	c.(*net.TCPConn).SetLinger(0)
	c.Close() // RST
	stderr.waitFor(t, 0, regexp.MustCompile(`a line from 127\.0\.0\.1:\d+ was cut short when the connection failed \(.*connection reset by peer\); not printed: "two, cut"`), waitTimeout)
	cmd.Process.Signal(syscall.SIGTERM)
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGTERM, stderr.String())
	if got := out.wait(t, waitTimeout); got != "one\n" {
		t.Errorf("stdout %q, want only the whole line", got)
	}
}

// TestListenLongLineIsNotInterleaved: a line longer than listen holds back
// is printed as it comes, and no other client's line lands inside it.
func TestListenLongLineIsNotInterleaved(t *testing.T) {
	t.Parallel()
	cmd, addr, stdout, stderr := startListenRaw(t, "tcp://127.0.0.1:0")
	out := watch(stdout)
	long, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	start := bytes.Repeat([]byte("a"), maxListenLine+maxListenLine/2)
	if _, err := long.Write(start); err != nil {
		t.Fatal(err)
	}
	// Its first MiB is printed before its end has come.
	if !out.until(func(s string) bool { return len(s) >= maxListenLine }, waitTimeout) {
		t.Fatalf("listen printed %d bytes of the long line, want its first %d before its end", len(out.String()), maxListenLine)
	}
	other, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := io.WriteString(other, "other line\n"); err != nil {
		t.Fatal(err)
	}
	// A wait for something that must not happen: the other line printed
	// inside the long one.
	out.until(func(s string) bool { return strings.Contains(s, "other") }, 300*time.Millisecond)
	if _, err := io.WriteString(long, "end\n"); err != nil {
		t.Fatal(err)
	}
	want := string(start) + "end\nother line\n"
	out.waitFor(t, 0, regexp.MustCompile(`other line\n`), waitTimeout)
	if got := out.String(); got != want {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Errorf("stdout differs from the long line then the other at byte %d: %q", i, got[max(i-10, 0):min(i+30, len(got))])
	}
	cmd.Process.Signal(syscall.SIGTERM)
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGTERM, stderr.String())
}

// TestListenStdoutClosed: when its reader goes (connpipe listen | head -1),
// listen ends by SIGPIPE, as cat would, and quietly.
func TestListenStdoutClosed(t *testing.T) {
	t.Parallel()
	cmd, addr, stdout, stderr := startListenRaw(t, "tcp://127.0.0.1:0")
	stdout.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "nobody reads this\n"); err != nil {
		t.Fatal(err)
	}
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGPIPE, stderr.String())
}

// TestListenTLSSelfSigned: the two commands the help gives to try TLS
// locally work: listen makes a certificate and writes it to -cert-out,
// send trusts it with -ca. The printed fingerprint is that of the file.
// Without -ca, send gives up at once and listen says why.
func TestListenTLSSelfSigned(t *testing.T) {
	t.Parallel()
	certOut := filepath.Join(t.TempDir(), "cp.pem")
	cmd, addr, stdout, stderr := startListenRaw(t, "-cert-out", certOut, "tls://127.0.0.1:0")
	out := watch(stdout)
	m, _ := stderr.waitFor(t, 0, regexp.MustCompile(`no -cert: serving a certificate made for this run, valid for localhost, 127\.0\.0\.1, ::1, SHA-256 fingerprint ([0-9A-F:]{95})\n`), waitTimeout)
	stderr.waitFor(t, 0, regexp.MustCompile(`to trust it: connpipe send -ca `+regexp.QuoteMeta(certOut)+` tls://`+regexp.QuoteMeta(addr)+`\n`), waitTimeout)
	data, err := os.ReadFile(certOut)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("-cert-out holds %q", data)
	}
	if sum := sha256.Sum256(block.Bytes); m[1] != strings.ToUpper(colons(hex.EncodeToString(sum[:]))) {
		t.Errorf("fingerprint %s, but the file's is %x", m[1], sum)
	}

	lines := numbered("tls", 100)
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(lines)), "send", "-ca", certOut, "tls://"+addr)
	if r.code != 0 {
		t.Fatalf("send -ca: exit status %d; stderr:\n%s", r.code, r.stderr)
	}
	out.waitFor(t, 0, regexp.MustCompile(`tls 99\n`), waitTimeout)
	if got := out.String(); got != joinLines(lines) {
		t.Errorf("listen printed %q", got)
	}

	r = runBinary(t, runTimeout, strings.NewReader("secret\n"), "send", "tls://"+addr)
	if r.code != 1 || !strings.Contains(r.stderr, "certificate signed by unknown authority") {
		t.Errorf("send without -ca: exit status %d; stderr:\n%s", r.code, r.stderr)
	}
	stderr.waitFor(t, 0, regexp.MustCompile(`TLS handshake with 127\.0\.0\.1:\d+ failed: remote error: tls: bad certificate`), waitTimeout)
	cmd.Process.Signal(os.Interrupt)
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, stderr.String())
	if strings.Contains(out.wait(t, waitTimeout), "secret") {
		t.Error("a line was sent to an unverified server")
	}
}

// TestListenTLSTemporaryCert: without -cert-out, the certificate is in a
// temporary file, named on stderr, that is gone when listen is.
func TestListenTLSTemporaryCert(t *testing.T) {
	t.Parallel()
	cmd, addr, stdout, stderr := startListenRaw(t, "tls://127.0.0.1:0")
	out := watch(stdout)
	m, _ := stderr.waitFor(t, 0, regexp.MustCompile(`to trust it: connpipe send -ca (\S+) tls://`+regexp.QuoteMeta(addr)+`\n`), waitTimeout)
	r := runBinary(t, runTimeout, strings.NewReader("over tls\n"), "send", "-ca", m[1], "tls://"+addr)
	if r.code != 0 {
		t.Fatalf("send -ca: exit status %d; stderr:\n%s", r.code, r.stderr)
	}
	out.waitFor(t, 0, regexp.MustCompile(`^over tls\n`), waitTimeout)
	cmd.Process.Signal(os.Interrupt)
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, stderr.String())
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the temporary certificate %s is still there: %v", m[1], err)
	}
}

// TestSendClientCertificate: send -cert/-key presents a client certificate
// to a listen -ca that requires one; without it the server refuses the
// connection and nothing is printed.
func TestSendClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clientCert, clientKey := writeClientCert(t, dir)
	serverCert := filepath.Join(dir, "server.pem")
	cmd, addr, stdout, stderr := startListenRaw(t, "-ca", clientCert, "-cert-out", serverCert, "tls://127.0.0.1:0")
	out := watch(stdout)
	r := runBinary(t, runTimeout, strings.NewReader("with a client certificate\n"),
		"send", "-ca", serverCert, "-cert", clientCert, "-key", clientKey, "tls://"+addr)
	if r.code != 0 {
		t.Fatalf("send -cert: exit status %d; stderr:\n%s", r.code, r.stderr)
	}
	out.waitFor(t, 0, regexp.MustCompile(`^with a client certificate\n`), waitTimeout)

	r = runBinary(t, runTimeout, strings.NewReader("without\n"), "send", "-close-timeout", "1m", "-ca", serverCert, "tls://"+addr)
	// TLS 1.3: the client's handshake is over before the server refuses;
	// send waits for the verdict, so the line is not written to a
	// connection that is about to go. The refusal is an alert, which
	// retrying will not change: send gives up at once and says why.
	for _, want := range []string{
		"connpipe: cannot connect to tls://" + addr + ": the server refused the TLS client: remote error: tls: certificate required\n",
		"connpipe: retrying cannot fix this: giving up; the server wants a client certificate: give it with -cert and -key\n",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("send without -cert: stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if r.code != 1 || r.took > 30*time.Second {
		t.Errorf("send without -cert: exit status %d after %v; want 1, at once", r.code, r.took)
	}
	stderr.waitFor(t, 0, regexp.MustCompile(`TLS handshake with 127\.0\.0\.1:\d+ failed: tls: client didn't provide a certificate`), waitTimeout)
	cmd.Process.Signal(os.Interrupt)
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, stderr.String())
	if got := out.wait(t, waitTimeout); got != "with a client certificate\n" {
		t.Errorf("listen printed %q", got)
	}
}

// writeClientCert writes a self-signed client certificate and its key to
// dir and returns their paths.
func writeClientCert(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "connpipe test client"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// colons puts a colon between the pairs of hex digits of h.
func colons(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
