package testnet

import (
	"fmt"
	"syscall"
	"unsafe"
)

// tcpInfoCall holds what socketcall(2) reads and writes. It escapes to the
// heap (tcpInfo returns a pointer into it), where memory does not move: the
// call passes its addresses as integers.
type tcpInfoCall struct {
	info syscall.TCPInfo
	size uint32
	args [5]uintptr
}

// tcpInfo reads fd's TCP_INFO. linux/386 has no getsockopt system call of
// its own: socketcall(2) (call 15, SYS_GETSOCKOPT in linux/net.h) takes the
// arguments from memory.
func tcpInfo(fd int) (*syscall.TCPInfo, error) {
	c := new(tcpInfoCall)
	c.size = uint32(unsafe.Sizeof(c.info))
	c.args = [5]uintptr{uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&c.info)), uintptr(unsafe.Pointer(&c.size))}
	_, _, errno := syscall.Syscall(syscall.SYS_SOCKETCALL, 15, uintptr(unsafe.Pointer(&c.args)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("getsockopt TCP_INFO: %w", errno)
	}
	if c.size < tcpInfoNeeded {
		return nil, fmt.Errorf("getsockopt TCP_INFO: %d bytes: %w", c.size, errTCPInfoShort)
	}
	return &c.info, nil
}
