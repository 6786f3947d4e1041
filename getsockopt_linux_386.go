package conn

import (
	"syscall"
	"unsafe"
)

// socketcallGetsockopt is getsockopt's number among socketcall(2)'s calls
// (SYS_GETSOCKOPT in linux/net.h).
const socketcallGetsockopt = 15

// getsockopt is getsockopt(2) into val, of *size bytes. linux/386 has no
// system call of that name: socketcall(2) takes the arguments from memory.
// args is kept in place for the call (its address is converted in the
// call's argument list); what it points at, val and size, must be in
// memory that does not move (the heap), since it holds them as integers.
func getsockopt(fd uintptr, level, name int, val unsafe.Pointer, size *uint32) syscall.Errno {
	args := [5]uintptr{fd, uintptr(level), uintptr(name), uintptr(val), uintptr(unsafe.Pointer(size))}
	_, _, errno := syscall.RawSyscall(syscall.SYS_SOCKETCALL, socketcallGetsockopt, uintptr(unsafe.Pointer(&args)), 0)
	return errno
}
