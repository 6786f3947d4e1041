package testnet

import (
	"errors"
	"net"
	"syscall"
)

// rawConn returns the RawConn of the socket under c, looking through TLS
// (anything with a NetConn method).
func rawConn(c net.Conn) (syscall.RawConn, error) {
	for range 4 {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.New("testnet: no socket under the connection")
	}
	return sc.SyscallConn()
}
