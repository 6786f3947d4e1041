package testnet

import (
	"errors"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// WaitPeerClosed blocks until c's kernel socket reports that the peer has
// closed or half-closed it (its FIN arrived: POLLRDHUP), reset it, or the
// socket failed, or until timeout; it reports which. It reads nothing, so a
// FIN behind unread data counts. c must be a *net.TCPConn or *net.UnixConn
// (or wrap one through a NetConn method, as *tls.Conn does). It is meant
// for tests that must not write until the client has seen a close: a
// signal, where a sleep would race.
func WaitPeerClosed(c net.Conn, timeout time.Duration) (bool, error) {
	for range 4 {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, errors.New("testnet: WaitPeerClosed: no socket under the connection")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	const pollRDHUP = 0x2000
	var (
		closed  bool
		pollErr error
	)
	err = rc.Control(func(fd uintptr) {
		pfd := struct {
			fd      int32
			events  int16
			revents int16
		}{fd: int32(fd), events: pollRDHUP}
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
			closed = n > 0
			return
		}
	})
	if err != nil {
		return false, err
	}
	return closed, pollErr
}
