package conn

import "syscall"

const canShutdown = true

func shutdownWrite(fd uintptr) error { return syscall.Shutdown(syscall.Handle(fd), syscall.SHUT_WR) }
