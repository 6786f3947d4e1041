//go:build linux && !386

package conn

import (
	"syscall"
	"unsafe"
)

// getsockopt is getsockopt(2) into val, of *size bytes. val and size must
// be in memory that does not move (the heap): the call passes them as
// integers.
func getsockopt(fd uintptr, level, name int, val unsafe.Pointer, size *uint32) syscall.Errno {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(name),
		uintptr(val), uintptr(unsafe.Pointer(size)), 0)
	return errno
}
