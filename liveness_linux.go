//go:build linux

package conn

import (
	"syscall"
	"time"
	"unsafe"
)

const (
	pollOUT   = 0x4
	pollERR   = 0x8
	pollHUP   = 0x10
	pollRDHUP = 0x2000
)

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// nativeProbe is what Linux's check needs beside the prober's fields: the
// answers of getsockopt(TCP_INFO), kept here so that the kernel writes
// into memory that does not move (see getsockopt).
type nativeProbe struct {
	info    syscall.TCPInfo
	infoLen uint32
	rtt     time.Duration // roundTrip's answer
	rttFd   func(uintptr) // p.tcpInfoFd, bound once
}

// useNative binds Linux's check: ppoll with POLLRDHUP, which tells a FIN
// behind unread data and, on a unix socket, a half-close from a close;
// SIOCOUTQ for quiet; ppoll again to wait for a reset.
func (p *prober) useNative() bool {
	p.peer, p.queue, p.reset, p.native.rttFd = p.ppollFd, p.queueFd, p.resetFd, p.tcpInfoFd
	return true
}

func (p *prober) ppollFd(fd uintptr) {
	pfd := pollFd{fd: int32(fd), events: pollRDHUP}
	var zero syscall.Timespec
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PPOLL,
		uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	if errno != 0 {
		return
	}
	p.pollVerdict(fd, pfd.revents)
	if pfd.revents&pollRDHUP != 0 && p.errno == 0 && p.tcp {
		p.fin = true // on a unix socket, a half-close: alive
	}
}

// pollVerdict records the error that revents report: the socket's own, or a
// reset (POLLHUP: both directions shut).
func (p *prober) pollVerdict(fd uintptr, revents int16) {
	if revents&pollERR != 0 {
		if soerr, _ := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR); soerr != 0 {
			p.errno = syscall.Errno(soerr)
			return
		}
	}
	if revents&(pollERR|pollHUP) != 0 {
		p.errno = syscall.ECONNRESET
	}
}

func (p *prober) queueFd(fd uintptr) {
	if p.tcp {
		var outq int32
		_, _, errno := syscall.RawSyscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&outq))) // SIOCOUTQ: bytes not yet acknowledged
		p.roomy = errno == 0 && outq == 0
		return
	}
	pfd := pollFd{fd: int32(fd), events: pollOUT}
	var zero syscall.Timespec
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PPOLL,
		uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	p.roomy = errno == 0 && pfd.revents&pollOUT != 0
}

// roundTrip returns the kernel's smoothed round trip of a TCP connection
// (tcpi_rtt), or dial if it does not tell.
func (p *prober) roundTrip(dial time.Duration) time.Duration {
	p.native.rtt = 0
	if err := p.rc.Control(p.native.rttFd); err != nil || p.native.rtt == 0 {
		return dial
	}
	return p.native.rtt
}

func (p *prober) tcpInfoFd(fd uintptr) {
	n := &p.native
	n.info, n.infoLen = syscall.TCPInfo{}, uint32(unsafe.Sizeof(n.info))
	if getsockopt(fd, syscall.IPPROTO_TCP, syscall.TCP_INFO, unsafe.Pointer(&n.info), &n.infoLen) == 0 {
		n.rtt = time.Duration(n.info.Rtt) * time.Microsecond
	}
}

// resetFd waits up to p.wait for a reset: POLLERR and POLLHUP are always
// reported.
func (p *prober) resetFd(fd uintptr) {
	pfd := pollFd{fd: int32(fd)}
	ts := syscall.NsecToTimespec(int64(max(p.wait, 0)))
	for {
		// Syscall6, not RawSyscall6: this one blocks, and the scheduler
		// must hand the thread's P to other goroutines meanwhile. The
		// kernel leaves in ts what is left, for a restart after EINTR.
		_, _, errno := syscall.Syscall6(syscall.SYS_PPOLL,
			uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		if errno != syscall.EINTR {
			break
		}
	}
	p.pollVerdict(fd, pfd.revents)
}
