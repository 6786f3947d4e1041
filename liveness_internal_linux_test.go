//go:build linux

package conn

import (
	"io"
	"net"
	"testing"
	"time"
)

// fill writes to c until a write blocks for 50 ms: its peer does not read.
func fill(t *testing.T, c net.Conn) {
	t.Helper()
	chunk := make([]byte, 64<<10)
	for range 10_000 {
		c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Write(chunk); err != nil {
			c.SetWriteDeadline(time.Time{})
			return
		}
	}
	t.Fatal("the peer never stopped taking data")
}

func TestProberQuiet(t *testing.T) {
	pairs := map[string]func(testing.TB) (net.Conn, net.Conn){"tcp": loopbackPair, "unix": unixPair}
	for name, pair := range pairs {
		t.Run(name, func(t *testing.T) {
			c, s := pair(t)
			p := newProber(c, probeNative)
			if !p.quiet() {
				t.Fatal("a fresh connection is not quiet")
			}
			c.Write([]byte("taken"))
			buf := make([]byte, 16)
			io.ReadFull(s, buf[:5])
			if name == "tcp" { // the acknowledgement may trail the read
				for deadline := time.Now().Add(10 * time.Second); !p.quiet() && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
			}
			if !p.quiet() {
				t.Fatal("not quiet once the peer took everything")
			}
			fill(t, c)
			if p.quiet() {
				t.Fatal("quiet while the send buffer is full")
			}
		})
	}
}
