//go:build !unix

package testnet

import "syscall"

// stallingListenControl returns nil on platforms without the unix
// setsockopt signature: NeverReader then keeps the default receive buffer
// and MSS, so client writes take longer to stall.
func stallingListenControl(rcvbuf, mss int) func(network, address string, c syscall.RawConn) error {
	return nil
}
