//go:build unix

package conn

import "syscall"

const canShutdown = true

func shutdownWrite(fd uintptr) error { return syscall.Shutdown(int(fd), syscall.SHUT_WR) }
