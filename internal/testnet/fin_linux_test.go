package testnet

import (
	"testing"
	"time"
)

func TestSinkHalfCloseKeepsReading(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			s := NewSink(t, network, WithHalfClose())
			c := dial(t, network, s.Addr())
			closed, err := WaitPeerClosed(c, waitLong)
			if !closed || err != nil {
				t.Fatalf("WaitPeerClosed: %v, %v; want the Sink's FIN", closed, err)
			}
			for range 3 {
				write(t, c, "line\n")
			}
			if !s.WaitLines(3, waitLong) {
				t.Fatalf("received %d lines after the half-close, want 3", s.LineCount())
			}
		})
	}
}

func TestWaitPeerClosedTimesOutOnAnOpenConnection(t *testing.T) {
	s := NewSink(t, "tcp")
	c := dial(t, "tcp", s.Addr())
	start := time.Now()
	closed, err := WaitPeerClosed(c, 50*time.Millisecond)
	if closed || err != nil {
		t.Fatalf("WaitPeerClosed on an open connection: %v, %v", closed, err)
	}
	if took := time.Since(start); took < 40*time.Millisecond {
		t.Errorf("returned after %v, before its timeout", took)
	}
	s.Stop()
	if closed, err := WaitPeerClosed(c, waitLong); !closed || err != nil {
		t.Fatalf("WaitPeerClosed after Stop: %v, %v", closed, err)
	}
}
