//go:build unix && !linux

package testnet

import (
	"fmt"
	"net"
	"syscall"
	"time"
)

// WaitPeerClosed is the Linux helper's counterpart on the other Unixes,
// which have no POLLRDHUP: it looks every millisecond for a pending error
// or for recv's end of file, peeking, so it reads nothing; but a FIN
// behind unread data is not seen, and it waits its whole timeout.
func WaitPeerClosed(c net.Conn, timeout time.Duration) (bool, error) {
	return await(c, timeout, func(n int, err error) bool {
		return err == nil && n == 0 || err != nil && err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
	})
}

// WaitReset waits until c's socket has a pending error (which it clears:
// the next Write on c fails) or recv fails, looking every millisecond, and
// returns nil then; an error if that did not happen within timeout.
func WaitReset(c net.Conn, timeout time.Duration) error {
	reset, err := await(c, timeout, func(n int, err error) bool {
		return err != nil && err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
	})
	if !reset || err != nil {
		return fmt.Errorf("testnet: WaitReset: no reset within %v (%v)", timeout, err)
	}
	return nil
}

// await looks every millisecond, up to timeout, for a pending error on c's
// socket or for what done says of a peeking recv's answer.
func await(c net.Conn, timeout time.Duration, done func(n int, err error) bool) (bool, error) {
	rc, err := rawConn(c)
	if err != nil {
		return false, err
	}
	var buf [1]byte
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var happened bool
		if err := rc.Control(func(fd uintptr) {
			if soerr, _ := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR); soerr != 0 {
				happened = true
				return
			}
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
			happened = done(n, err)
		}); err != nil {
			return false, err
		}
		if happened {
			return true, nil
		}
	}
	return false, nil
}
