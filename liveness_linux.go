//go:build linux

package conn

import (
	"net"
	"sync"
	"syscall"
	"unsafe"
)

const (
	pollERR   = 0x8
	pollHUP   = 0x10
	pollRDHUP = 0x2000
)

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// A prober finds out, without blocking and without reading, whether the peer
// of a stream socket has closed or reset it: ppoll with a zero timeout asks
// for POLLRDHUP, which the kernel sets once the peer's FIN has arrived —
// also when unread data sits before it, which a MSG_PEEK cannot see past.
// It goes through RawConn.Control, which holds no read or write lock, so it
// neither waits for nor steals from a goroutine reading the connection.
type prober struct {
	mu      sync.Mutex // one check at a time; results below
	rc      syscall.RawConn
	poll    func(fd uintptr) // p.pollFd, bound once so a check allocates nothing
	revents int16
	soerr   int
}

// newProber returns a prober for c's stream socket, looking through TLS
// (anything with a NetConn method), or nil if c has none.
func newProber(c net.Conn) *prober {
	for i := 0; i < 4; i++ {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok || isNil(sc) {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	typ := -1
	if err := rc.Control(func(fd uintptr) {
		typ, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
	}); err != nil || (typ != syscall.SOCK_STREAM && typ != syscall.SOCK_SEQPACKET) {
		return nil
	}
	p := &prober{rc: rc}
	p.poll = p.pollFd
	return p
}

func (p *prober) pollFd(fd uintptr) {
	pfd := pollFd{fd: int32(fd), events: pollRDHUP}
	var zero syscall.Timespec
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PPOLL,
		uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	if errno != 0 {
		return
	}
	p.revents = pfd.revents
	if pfd.revents&pollERR != 0 {
		p.soerr, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
	}
}

// peerGone returns nil if the connection looks alive, or why it is not. A
// check already under way in another goroutine answers for this one.
func (p *prober) peerGone() error {
	if !p.mu.TryLock() {
		return nil
	}
	defer p.mu.Unlock()
	p.revents, p.soerr = 0, 0
	if err := p.rc.Control(p.poll); err != nil {
		return err
	}
	switch {
	case p.soerr != 0:
		return syscall.Errno(p.soerr)
	case p.revents&(pollERR|pollHUP) != 0:
		return syscall.ECONNRESET
	case p.revents&pollRDHUP != 0:
		return errPeerClosed
	}
	return nil
}
