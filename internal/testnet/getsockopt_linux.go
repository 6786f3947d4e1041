//go:build linux && !386

package testnet

import (
	"syscall"
	"unsafe"
)

func (c *tcpInfoCall) getsockopt(fd int) syscall.Errno {
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&c.info)), uintptr(unsafe.Pointer(&c.size)), 0)
	return errno
}
