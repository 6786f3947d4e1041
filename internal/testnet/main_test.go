package testnet

import (
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLong bounds every wait for something that should happen promptly;
// generous because the tests run on 2 shared cores and under -race.
const waitLong = 10 * time.Second

// dial connects to network/addr and closes the connection at test end.
func dial(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, waitLong)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// write writes s to c or fails the test.
func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if err := c.SetWriteDeadline(time.Now().Add(waitLong)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// bounded fails the test if f does not return within waitLong.
func bounded(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatalf("%s did not return within %v", what, waitLong)
	}
}

// readUntilEnd reads from c until an error, with a deadline of waitLong,
// and returns that error.
func readUntilEnd(t *testing.T, c net.Conn) error {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			return err
		}
	}
}
