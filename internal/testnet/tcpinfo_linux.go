package testnet

import (
	"fmt"
	"syscall"
	"unsafe"
)

// tcpInfoCall holds what getsockopt(2) writes. It escapes to the heap
// (tcpInfo returns a pointer into it), where memory does not move: the
// call passes its addresses as integers.
type tcpInfoCall struct {
	info syscall.TCPInfo
	size uint32
}

// tcpInfo reads fd's TCP_INFO.
func tcpInfo(fd int) (*syscall.TCPInfo, error) {
	c := new(tcpInfoCall)
	c.size = uint32(unsafe.Sizeof(c.info))
	if errno := c.getsockopt(fd); errno != 0 {
		return nil, fmt.Errorf("getsockopt TCP_INFO: %w", errno)
	}
	if c.size < tcpInfoNeeded {
		return nil, fmt.Errorf("getsockopt TCP_INFO: %d bytes: %w", c.size, errTCPInfoShort)
	}
	return &c.info, nil
}
