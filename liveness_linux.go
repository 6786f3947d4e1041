//go:build linux

package conn

import (
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

const (
	pollOUT   = 0x4
	pollERR   = 0x8
	pollHUP   = 0x10
	pollRDHUP = 0x2000
	tiocOUTQ  = 0x5411 // SIOCOUTQ: bytes not yet acknowledged (TCP) or read by the peer (unix)
)

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// A prober asks the kernel about a socket without reading or writing it:
// whether a Write could be blocked on it; and, for a stream socket, whether
// the peer has closed or reset it, and whether it reset after a Write. It goes through
// RawConn.Control, which holds neither the read nor the write lock, so it
// neither waits for nor steals from a goroutine using the connection.
//
// The answers are left in fields and the system calls are bound methods
// stored once, so that a check allocates nothing; mu serialises them.
type prober struct {
	rc     syscall.RawConn
	stream bool // a stream socket: the liveness check applies
	tcp    bool // a FIN alone does not tell a close from a half-close

	mu                 sync.Mutex
	peer, queue, reset func(fd uintptr) // p.peerFd, p.queueFd, p.resetFd
	revents            int16
	soerr              int
	roomy              bool          // queueFd's answer
	wait, waitCap      time.Duration // resetFd's floor and ceiling
}

// newProber returns a prober for c's socket, looking through TLS (anything
// with a NetConn method), or nil if c has none (or its methods panic).
func newProber(c net.Conn) (p *prober) {
	defer func() {
		if recover() != nil {
			p = nil
		}
	}()
	for range 4 { // TLS over TCP is one level; a cycle must not loop
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
	var (
		typ, domain int
		sockErr     error
	)
	if err := rc.Control(func(fd uintptr) {
		if typ, sockErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE); sockErr == nil {
			domain, sockErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN)
		}
	}); err != nil || sockErr != nil {
		return nil
	}
	stream := typ == syscall.SOCK_STREAM || typ == syscall.SOCK_SEQPACKET
	p = &prober{rc: rc, stream: stream, tcp: stream && (domain == syscall.AF_INET || domain == syscall.AF_INET6)}
	p.peer, p.queue, p.reset = p.peerFd, p.queueFd, p.resetFd
	return p
}

func (p *prober) peerFd(fd uintptr) {
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

// check reports whether the peer has closed or reset the connection. err is
// set when the connection is unusable: reset, failed, closed by us, or, on
// a unix socket, closed by the peer. fin alone means the peer's FIN has
// arrived on a TCP connection, which may be a close or a half-close; on a
// unix socket a half-close is told apart from a close (which also raises
// POLLHUP) and reported as alive.
func (p *prober) check() (fin bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revents, p.soerr = 0, 0
	if err := p.rc.Control(p.peer); err != nil {
		return false, err
	}
	switch {
	case p.soerr != 0:
		return false, syscall.Errno(p.soerr)
	case p.revents&(pollERR|pollHUP) != 0:
		return false, syscall.ECONNRESET
	case p.revents&pollRDHUP != 0 && p.tcp:
		return true, nil
	}
	return false, nil
}

func (p *prober) queueFd(fd uintptr) {
	if p.tcp {
		var outq int32
		_, _, errno := syscall.RawSyscall(syscall.SYS_IOCTL, fd, tiocOUTQ, uintptr(unsafe.Pointer(&outq)))
		p.roomy = errno == 0 && outq == 0
		return
	}
	pfd := pollFd{fd: int32(fd), events: pollOUT}
	var zero syscall.Timespec
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PPOLL,
		uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	p.roomy = errno == 0 && pfd.revents&pollOUT != 0
}

// quiet reports whether no Write can be blocked on the socket now: on TCP,
// every byte written has been acknowledged (a blocked Write needs a full
// send buffer); on other sockets, the kernel reports room to write (for a
// unix stream socket, at most a quarter of its buffer is in use: a Write
// blocked on a full buffer is woken only then).
func (p *prober) quiet() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.roomy = false
	if err := p.rc.Control(p.queue); err != nil {
		return false
	}
	return p.roomy
}

func (p *prober) resetFd(fd uintptr) {
	// The peer answers data sent to a closed socket with a reset within a
	// round trip; allow two and a floor for a busy machine.
	var info syscall.TCPInfo
	size := uint32(unsafe.Sizeof(info))
	syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0) // on failure Rtt stays 0
	pfd := pollFd{fd: int32(fd)} // POLLERR and POLLHUP are always reported
	ts := syscall.NsecToTimespec(int64(resetWait(p.wait, p.waitCap, info.Rtt)))
	for {
		// Syscall6, not RawSyscall6: this one blocks, and the scheduler
		// must hand the thread's P to other goroutines meanwhile.
		_, _, errno := syscall.Syscall6(syscall.SYS_PPOLL,
			uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		if errno != syscall.EINTR {
			break
		}
	}
	p.revents = pfd.revents
	if pfd.revents&pollERR != 0 {
		p.soerr, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
	}
}

// resetWait is how long to wait for a reset: floor plus two round trips of
// rttMicros (tcpi_rtt, the smoothed round trip in µs), at most ceiling.
func resetWait(floor, ceiling time.Duration, rttMicros uint32) time.Duration {
	return min(floor+2*time.Duration(rttMicros)*time.Microsecond, ceiling)
}

// awaitReset waits up to floor plus two round trips (at most ceiling) for the peer to reset
// the connection after a Write, and returns why it did, or nil if it did
// not: then the peer's kernel accepted the data on an open socket.
func (p *prober) awaitReset(floor, ceiling time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revents, p.soerr, p.wait, p.waitCap = 0, 0, floor, ceiling
	if err := p.rc.Control(p.reset); err != nil {
		return err
	}
	switch {
	case p.soerr != 0:
		return syscall.Errno(p.soerr)
	case p.revents&(pollERR|pollHUP) != 0:
		return syscall.ECONNRESET
	}
	return nil
}
