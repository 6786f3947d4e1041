//go:build linux

package conn

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
	"unsafe"
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

// ppoll's wait for a reset takes the kernel's round trip (tcpi_rtt), and
// the dial's only where the kernel does not tell: qemu-user passes on only
// the first word of TCP_INFO.
func TestProberRoundTrip(t *testing.T) {
	c, s := loopbackPair(t)
	p := newProber(c, probeNative)
	var (
		info  = new(syscall.TCPInfo)
		size  = new(uint32)
		errno syscall.Errno
	)
	*size = uint32(unsafe.Sizeof(*info))
	p.rc.Control(func(fd uintptr) {
		errno = getsockopt(fd, syscall.IPPROTO_TCP, syscall.TCP_INFO, unsafe.Pointer(info), size)
	})
	told := errno == 0 && *size >= uint32(unsafe.Offsetof(info.Rtt)+unsafe.Sizeof(info.Rtt)) && info.Rtt > 0
	rtt := p.roundTrip(time.Hour)
	if !told {
		if rtt != time.Hour {
			t.Errorf("the kernel does not tell the round trip (%v, %d bytes), yet roundTrip is %v, not the dial's", errno, *size, rtt)
		}
		t.Skip("the kernel does not tell the round trip here (qemu-user?): the dial's stands for it")
	}
	if rtt <= 0 || rtt >= time.Second {
		t.Fatalf("roundTrip %v on loopback, whose tcpi_rtt is %d µs", rtt, info.Rtt)
	}
	s.(*net.TCPConn).CloseWrite()
	awaitClose(t, c)
	start := time.Now()
	if err := p.awaitReset(time.Millisecond, maxResetWait, 30*time.Millisecond); err != nil {
		t.Fatalf("a reset from a half-closed peer: %v", err)
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("waited %v: it should take the kernel's round trip (µs on loopback), not the dial's (30 ms)", took)
	}
}
