package testnet

import (
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"
)

const (
	pollERR   = 0x8
	pollHUP   = 0x10
	pollRDHUP = 0x2000
)

// WaitPeerClosed blocks until c's kernel socket reports that the peer has
// closed or half-closed it (its FIN arrived: POLLRDHUP), reset it, or the
// socket failed, or until timeout; it reports which. It reads nothing, so a
// FIN behind unread data counts. c must be a *net.TCPConn or *net.UnixConn
// (or wrap one through a NetConn method, as *tls.Conn does). It is meant
// for tests that must not write until the client has seen a close: a
// signal, where a sleep would race.
func WaitPeerClosed(c net.Conn, timeout time.Duration) (bool, error) {
	return poll(c, pollRDHUP, timeout)
}

// WaitReset blocks until c's socket has been reset (POLLHUP: both ways
// shut) or failed, and returns nil then; an error if it was not within
// timeout. It reads nothing.
func WaitReset(c net.Conn, timeout time.Duration) error {
	if reset, err := poll(c, 0, timeout); !reset || err != nil {
		return fmt.Errorf("testnet: WaitReset: no reset within %v (%v)", timeout, err)
	}
	return nil
}

// poll waits up to timeout for events on c's socket, or POLLERR or POLLHUP,
// which are always reported, and reports whether any came.
func poll(c net.Conn, events int16, timeout time.Duration) (bool, error) {
	rc, err := rawConn(c)
	if err != nil {
		return false, err
	}
	var (
		happened bool
		pollErr  error
	)
	err = rc.Control(func(fd uintptr) {
		pfd := struct {
			fd      int32
			events  int16
			revents int16
		}{fd: int32(fd), events: events}
		ts := syscall.NsecToTimespec(int64(timeout))
		for {
			n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1,
				uintptr(unsafe.Pointer(&ts)), 0, 0, 0) // the kernel updates ts with what is left
			if errno == syscall.EINTR {
				continue
			}
			if errno != 0 {
				pollErr = errno
			}
			happened = n > 0
			return
		}
	})
	if err != nil {
		return false, err
	}
	return happened, pollErr
}
