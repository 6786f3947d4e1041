package testnet

import (
	"syscall"
	"unsafe"
)

// getsockopt: linux/386 has no getsockopt system call of its own:
// socketcall(2) (call 15, SYS_GETSOCKOPT in linux/net.h) takes the
// arguments from memory.
func (c *tcpInfoCall) getsockopt(fd int) syscall.Errno {
	args := [5]uintptr{uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&c.info)), uintptr(unsafe.Pointer(&c.size))}
	_, _, errno := syscall.Syscall(syscall.SYS_SOCKETCALL, 15, uintptr(unsafe.Pointer(&args)), 0)
	return errno
}
