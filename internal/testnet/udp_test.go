package testnet

import (
	"errors"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestUDPSinkRecordsDatagrams(t *testing.T) {
	u := NewUDPSink(t)
	c := dialUDP(t, u.Addr())
	want := []string{"one", "two", "three"}
	for _, d := range want {
		if _, err := c.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	if !u.WaitCount(len(want), waitLong) {
		t.Fatalf("Count() = %d, want %d", u.Count(), len(want))
	}
	if got := u.Datagrams(); !slices.Equal(got, want) {
		t.Errorf("Datagrams() = %q, want %q", got, want)
	}
}

func TestUDPSinkStopRefusesConnectedClient(t *testing.T) {
	u := NewUDPSink(t)
	addr := u.Addr()
	c := dialUDP(t, addr)
	if _, err := c.Write([]byte("up")); err != nil {
		t.Fatal(err)
	}
	if !u.WaitCount(1, waitLong) {
		t.Fatal("datagram not received")
	}

	u.Stop()
	u.Stop() // idempotent
	// The first write succeeds and provokes ICMP port-unreachable; the
	// kernel reports it on the next write. Allow a few writes in case the
	// ICMP is still in flight.
	var err error
	attempts := 0
	for deadline := time.Now().Add(waitLong); err == nil && time.Now().Before(deadline); {
		attempts++
		_, err = c.Write([]byte("down"))
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("write to stopped UDPSink: %v, want ECONNREFUSED", err)
	}
	t.Logf("ECONNREFUSED on write %d after Stop", attempts)

	if err := u.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := u.Addr(); got != addr {
		t.Fatalf("Addr() after Start = %q, want %q", got, addr)
	}
	if _, err := c.Write([]byte("again")); err != nil {
		t.Fatalf("write after Start: %v", err)
	}
	if !u.WaitCount(2, waitLong) {
		t.Fatal("datagram after Start not received")
	}
	if got := u.Datagrams(); !slices.Equal(got, []string{"up", "again"}) {
		t.Errorf("Datagrams() = %q", got)
	}
	bounded(t, "Close", u.Close)
	bounded(t, "second Close", u.Close)
	if err := u.Start(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Start after Close: %v, want net.ErrClosed", err)
	}
}

func dialUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
