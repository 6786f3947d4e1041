package conn_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// go-kit's level filters work on the Manager's lines.
func TestGoKitLevelFilterWorksOnTheManagersLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		f := &fakeNet{}
		m := newFake(t, f, conn.WithLogger(level.NewFilter(log.NewLogfmtLogger(&out), level.AllowWarn())))
		m.Take()
		f.set(func(f *fakeNet) { f.dialErr = errors.New("down") })
		m.Put(errors.New("lost"))
		time.Sleep(2 * time.Second) // the redial after the backoff fails
		m.Close()
		got := out.String()
		if strings.Contains(got, "msg=connected") || strings.Contains(got, "msg=closed") ||
			!strings.Contains(got, `level=warn msg="connection lost"`) || !strings.Contains(got, `level=warn msg="dial failed"`) {
			t.Errorf("AllowWarn let through:\n%s", got)
		}
	})
}

// timedWriter writes to a Manager set after it was made, and records how
// long each Write took and what it returned.
type timedWriter struct {
	ready chan struct{} // closed once m is set
	m     *conn.Manager

	mu    sync.Mutex
	took  []time.Duration
	errs  []error
	lines []string
}

func (w *timedWriter) Write(p []byte) (int, error) {
	<-w.ready
	start := time.Now()
	n, err := w.m.Write(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.took = append(w.took, time.Since(start))
	w.errs = append(w.errs, err)
	w.lines = append(w.lines, string(p))
	return n, err
}

// The README's pattern gone wrong as users met it: the Manager logs
// through slog.Default(), and the program then makes slog's default a
// handler that writes to the same Manager. Every line the Manager logs
// comes back into its Write; none may wait for the Manager's own
// goroutine (before: "dial failed" and "connection lost" waited a second
// each for the dial that goroutine was to make after logging them).
func TestLoggerWritingIntoItsOwnManagerNeverWaitsForItself(t *testing.T) {
	defer func(l *slog.Logger, w io.Writer, flags int) {
		slog.SetDefault(l)
		stdlog.SetOutput(w)
		stdlog.SetFlags(flags)
	}(slog.Default(), stdlog.Writer(), stdlog.Flags())
	synctest.Test(t, func(t *testing.T) {
		w := &timedWriter{ready: make(chan struct{})}
		f := &fakeNet{dialErr: errors.New("down")}
		w.m = conn.New("tcp", "fake:1", conn.WithDialer(f.Dial), conn.WithSlogLogger(slog.Default()),
			conn.WithBackoff(time.Second, time.Second))
		slog.SetDefault(slog.New(slog.NewTextHandler(w, nil)))
		close(w.ready)
		time.Sleep(1500 * time.Millisecond) // the first dial failed; the second is at 1 s ±50%
		f.set(func(f *fakeNet) { f.dialErr = nil })
		time.Sleep(2 * time.Second)
		w.m.Write([]byte("proof\n"))
		time.Sleep(time.Second) // proven: its loss is redialed at once
		w.m.Put(errors.New("lost"))
		synctest.Wait()
		w.m.Close()

		w.mu.Lock()
		defer w.mu.Unlock()
		seen := strings.Join(w.lines, "")
		for _, msg := range []string{"dial failed", "connected", "connection lost", "closed"} {
			if !strings.Contains(seen, msg) {
				t.Errorf("%q never reached the handler; it saw:\n%s", msg, seen)
			}
		}
		for i, d := range w.took {
			if d != 0 {
				t.Errorf("log line %q waited %v in the Manager's Write (%v)", w.lines[i], d, w.errs[i])
			}
		}
		// "connection lost" is written on the connection that replaced
		// the lost one; only lines logged while there was none fail.
		for i, l := range w.lines {
			if strings.Contains(l, "connection lost") && w.errs[i] != nil {
				t.Errorf("%q: %v, want it written on the new connection", l, w.errs[i])
			}
		}
	})
}

// A malformed address or an unknown network is logged at level error as
// soon as the Manager is made, and Write's error says why, while matching
// ErrConnectionUnavailable; go-kit's constructors return the bare value,
// so that code comparing with == keeps working.
func TestWriteSaysWhyNoConnectionCanBeMade(t *testing.T) {
	for _, tc := range []struct {
		network, address string
		cause            any // a pointer to the type errors.As must find
		text             string
	}{
		{"tcp", "localhost", new(*net.AddrError), "missing port in address"},
		{"tcp", "127.0.0.1:99999", new(*net.AddrError), "invalid port"},
		{"tcpx", "127.0.0.1:1", new(net.UnknownNetworkError), "unknown network tcpx"},
	} {
		t.Run(tc.network+" "+tc.address, func(t *testing.T) {
			var out syncBuffer
			m := conn.New(tc.network, tc.address, conn.WithLogger(log.NewLogfmtLogger(&out)))
			defer m.Close()
			_, err := m.Write([]byte("x"))
			var ue *conn.UnavailableError
			if !errors.Is(err, conn.ErrConnectionUnavailable) || !errors.As(err, &ue) || !errors.As(ue.Cause, tc.cause) ||
				!strings.Contains(err.Error(), "connection unavailable: ") || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Write: %v, want ErrConnectionUnavailable caused by %q", err, tc.text)
			}
			if !conn.IsPermanent(err) {
				t.Errorf("IsPermanent(%v) = false", err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(out.String(), `level=error msg="dial failed"`) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if !strings.Contains(out.String(), `level=error msg="dial failed"`) || !strings.Contains(out.String(), tc.text) {
				t.Errorf("logged %q, want the dial failure at level error", out.String())
			}

			g := conn.NewDefaultManager(tc.network, tc.address, nil)
			defer g.Close()
			if _, err := g.Write([]byte("x")); err != conn.ErrConnectionUnavailable {
				t.Errorf("go-kit constructor's Write: %#v, want ErrConnectionUnavailable itself", err)
			}
		})
	}
}

// A TLS peer whose certificate does not verify is a permanent failure: it
// is logged at level error and Write's error carries the verification
// error.
func TestUnverifiedCertificateIsPermanent(t *testing.T) {
	serverTLS, _ := testnet.SelfSignedTLS(t)
	sink := testnet.NewSink(t, "tcp", testnet.WithTLS(serverTLS))
	var out syncBuffer
	d := &tls.Dialer{Config: &tls.Config{ServerName: "127.0.0.1", RootCAs: x509.NewCertPool()}}
	m := conn.New("tcp", sink.Addr(), conn.WithDialer(d.DialContext), conn.WithLogger(log.NewLogfmtLogger(&out)))
	defer m.Close()
	_, err := m.Write([]byte("x"))
	var (
		ue     *conn.UnavailableError
		verify *tls.CertificateVerificationError
	)
	if !errors.Is(err, conn.ErrConnectionUnavailable) || !errors.As(err, &ue) || !errors.As(ue.Cause, &verify) || !conn.IsPermanent(err) {
		t.Fatalf("Write: %v, want ErrConnectionUnavailable caused by a verification error", err)
	}
	m.Close() // delivers the log lines
	if !strings.Contains(out.String(), `level=error msg="dial failed"`) {
		t.Errorf("logged %q, want the dial failure at level error", out.String())
	}
}

func TestIsPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("x"), false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "missing port in address", Addr: "h"}}, true},
		{&net.OpError{Op: "dial", Net: "tcpx", Err: net.UnknownNetworkError("tcpx")}, true},
		{&net.ParseError{Type: "IP address", Text: "x"}, true},
		{fmt.Errorf("dial: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), true},
		{x509.HostnameError{Host: "h", Certificate: &x509.Certificate{}}, true},
		{x509.CertificateInvalidError{Reason: x509.Expired, Cert: &x509.Certificate{}}, true},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, true},
		{tls.AlertError(42), true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "h", IsNotFound: true}}, false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: conn.ErrRefused}, false},
		{context.DeadlineExceeded, false},
		{conn.ErrConnectionUnavailable, false},
		{&conn.UnavailableError{Cause: net.UnknownNetworkError("x")}, true},
		{&conn.UnavailableError{}, false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "unknown port", Name: "tcp/nosuchsvc"}}, true},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: internal error")}, false},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}, true},
	} {
		if got := conn.IsPermanent(tc.err); got != tc.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A Write that wrote nothing because the last dial timed out matches
// ErrConnectionUnavailable, not the timeout identities that a Write timed
// out while writing has: the cause is a field, not wrapped (found by
// review: it unwrapped to context.DeadlineExceeded).
func TestUnavailableDoesNotLookLikeATimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{hang: true}
		m := newFake(t, f, conn.WithDialTimeout(100*time.Millisecond), conn.WithAfterFunc(instantAfter(0)))
		time.Sleep(time.Second)
		_, err := m.Write([]byte("x"))
		var (
			ne net.Error
			ue *conn.UnavailableError
		)
		if !errors.Is(err, conn.ErrConnectionUnavailable) || !errors.As(err, &ue) || !errors.Is(ue.Cause, context.DeadlineExceeded) {
			t.Fatalf("Write: %v, want ErrConnectionUnavailable caused by the dial's deadline", err)
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) {
			t.Errorf("a Write that wrote nothing matches a timeout: %v", err)
		}
	})
}

// A TLS peer that refuses the handshake answers with an alert, which
// crypto/tls reports as a *net.OpError "remote error" with an unexported
// type: permanent, since the configuration must change (found by review).
func TestTLSRefusalsArePermanent(t *testing.T) {
	serverTLS, clientTLS := testnet.SelfSignedTLS(t)
	for _, tc := range []struct {
		name           string
		server, client func(*tls.Config)
	}{
		{"protocol version", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 }},
		{"client certificate required", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.ClientAuth = tls.RequireAnyClientCert
		}, func(*tls.Config) {}},
		{"no cipher suite in common", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}, func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, cc := serverTLS.Clone(), clientTLS.Clone()
			tc.server(sc)
			tc.client(cc)
			ln, err := tls.Listen("tcp", "127.0.0.1:0", sc)
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan struct{})
			go func() {
				defer close(served)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.(*tls.Conn).Handshake()
					c.Close()
				}
			}()
			defer func() { ln.Close(); <-served }()
			m := conn.New("tcp", ln.Addr().String(), conn.WithDialer((&tls.Dialer{Config: cc}).DialContext))
			defer m.Close()
			if _, err := m.Write([]byte("x")); !errors.Is(err, conn.ErrConnectionUnavailable) || !conn.IsPermanent(err) {
				t.Errorf("Write: %v; want ErrConnectionUnavailable, permanent", err)
			}
		})
	}
}
