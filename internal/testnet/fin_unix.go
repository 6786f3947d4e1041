//go:build unix && !linux

package testnet

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// WaitPeerClosed is the Linux helper's counterpart on the other Unixes,
// which have no POLLRDHUP: it looks every millisecond for a pending error
// or for recv's end of file, peeking, so it reads nothing; but a FIN
// behind unread data is not seen, and it waits its whole timeout.
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
	var buf [1]byte
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var closed bool
		if err := rc.Control(func(fd uintptr) {
			if soerr, _ := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR); soerr != 0 {
				closed = true
				return
			}
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
			closed = err == nil && n == 0 || err != nil && err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
		}); err != nil {
			return false, err
		}
		if closed {
			return true, nil
		}
	}
	return false, nil
}
