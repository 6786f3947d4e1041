package testnet

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBlackholeDialTimesOut(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_syncookies"); err == nil {
		t.Logf("tcp_syncookies=%s", strings.TrimSpace(string(b)))
	}
	b := NewBlackhole(t)
	const timeout = 300 * time.Millisecond

	t.Run("Dialer.Timeout", func(t *testing.T) {
		start := time.Now()
		c, err := (&net.Dialer{Timeout: timeout}).Dial("tcp", b.Addr())
		checkBlackholed(t, c, err, time.Since(start), timeout)
	})
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", b.Addr())
		checkBlackholed(t, c, err, time.Since(start), timeout)
	})

	// Once closed, the port refuses, proving the listener really went away.
	bounded(t, "Close", b.Close)
	bounded(t, "second Close", b.Close)
	c, err := net.DialTimeout("tcp", b.Addr(), waitLong)
	if err == nil {
		_ = c.Close()
		t.Fatal("dial after Close succeeded")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Close: %v, want ECONNREFUSED", err)
	}
}

func checkBlackholed(t *testing.T, c net.Conn, err error, elapsed, timeout time.Duration) {
	t.Helper()
	if err == nil {
		_ = c.Close()
		t.Fatal("dial to blackhole succeeded")
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to blackhole was refused: %v", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial to blackhole: %v, want a timeout", err)
	}
	if elapsed < timeout*9/10 {
		t.Errorf("dial failed after %v, before its %v timeout", elapsed, timeout)
	}
}

func TestBlackholeStaysBlackWithManyDialers(t *testing.T) {
	b := NewBlackhole(t)
	const dialers = 8
	errs := make(chan error, dialers)
	for range dialers {
		go func() {
			c, err := (&net.Dialer{Timeout: 300 * time.Millisecond}).Dial("tcp", b.Addr())
			if err == nil {
				_ = c.Close()
			}
			errs <- err
		}()
	}
	for range dialers {
		select {
		case err := <-errs:
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("concurrent dial: %v, want a timeout", err)
			}
		case <-time.After(waitLong):
			t.Fatal("dialers did not finish")
		}
	}
}
