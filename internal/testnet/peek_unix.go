//go:build unix

package testnet

import (
	"net"
	"syscall"
	"time"
)

// await, the means of WaitPeerClosed and WaitReset where there is no
// POLLRDHUP (they are ppoll on Linux, where it is tested), peeks at c's socket every millisecond, up to timeout, until an
// error, or an end of file unless reset; with reset it also reads SO_ERROR,
// which a reset behind unread data sets.
func await(c net.Conn, timeout time.Duration, reset bool) (bool, error) {
	rc, err := rawConn(c)
	if err != nil {
		return false, err
	}
	var buf [1]byte
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var happened bool
		if err := rc.Control(func(fd uintptr) {
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
			failed := err != nil && err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
			happened = failed || !reset && err == nil && n == 0
			if !happened && reset {
				soerr, _ := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
				happened = soerr != 0
			}
		}); err != nil {
			return false, err
		}
		if happened {
			return true, nil
		}
	}
	return false, nil
}
