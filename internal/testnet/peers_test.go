package testnet

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

func TestNeverReaderStallsClientWrites(t *testing.T) {
	r := NewNeverReader(t)
	c := dial(t, "tcp", r.Addr())
	if !r.WaitAccepted(1, waitLong) {
		t.Fatal("connection not accepted")
	}
	// A non-reading peer stalls the client after ~100-200 KB; give the
	// kernel plenty of slack, but catch a peer that actually drains data.
	const limit = 16 << 20
	chunk := make([]byte, 64<<10)
	if err := c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	written := 0
	var err error
	for written < limit {
		var n int
		n, err = c.Write(chunk)
		written += n
		if err != nil {
			break
		}
	}
	if err == nil {
		t.Fatalf("client wrote %d bytes without stalling", written)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write after %d bytes: %v, want os.ErrDeadlineExceeded", written, err)
	}
	t.Logf("client write stalled after %d bytes", written)
	if got := r.Accepted(); got != 1 {
		t.Errorf("Accepted() = %d, want 1", got)
	}
	bounded(t, "Close", r.Close)
	bounded(t, "second Close", r.Close)
}

func TestFlapperClosesAtOnce(t *testing.T) {
	f := NewFlapper(t)
	for i := 1; i <= 3; i++ {
		c := dial(t, "tcp", f.Addr())
		start := time.Now()
		if err := readUntilEnd(t, c); !errors.Is(err, io.EOF) {
			t.Fatalf("read from flapped connection: %v, want io.EOF", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("connection %d closed after %v, want at once", i, d)
		}
		if !f.WaitAccepted(i, waitLong) {
			t.Fatalf("Accepted() = %d, want %d", f.Accepted(), i)
		}
	}
	bounded(t, "Close", f.Close)
	bounded(t, "second Close", f.Close)
}
