//go:build unix

package testnet

import "syscall"

// stallingListenControl returns a net.ListenConfig.Control function that,
// before bind/listen, sets SO_RCVBUF to rcvbuf and TCP_MAXSEG to mss on
// the listening socket. Accepted sockets inherit both, so from the
// handshake on they advertise a small window and, through the SYN-ACK's
// MSS option, make the client use small segments — which also keeps the
// client's autotuned send buffer small (see NeverReader).
func stallingListenControl(rcvbuf, mss int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var sockErr error
		err := c.Control(func(fd uintptr) {
			sockErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			if sockErr == nil {
				sockErr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, mss)
			}
		})
		if err != nil {
			return err
		}
		return sockErr
	}
}
