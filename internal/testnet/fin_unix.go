//go:build unix && !linux

package testnet

import (
	"fmt"
	"net"
	"time"
)

// WaitPeerClosed is the Linux helper's counterpart on the other Unixes,
// which have no POLLRDHUP: it peeks every millisecond until recv reports
// an end of file or an error, so it reads nothing and clears no error (a
// peek leaves the socket's error for the next reader on the BSDs); but a
// FIN behind unread data is not seen, and then it waits its whole timeout.
func WaitPeerClosed(c net.Conn, timeout time.Duration) (bool, error) {
	return await(c, timeout, false)
}

// WaitReset waits until c's socket has a pending error (SO_ERROR, which it
// clears: the next Write on c fails instead) or a peek fails, looking
// every millisecond, and returns nil then; an error if that did not happen
// within timeout.
func WaitReset(c net.Conn, timeout time.Duration) error {
	reset, err := await(c, timeout, true)
	if !reset || err != nil {
		return fmt.Errorf("testnet: WaitReset: no reset within %v (%v)", timeout, err)
	}
	return nil
}
