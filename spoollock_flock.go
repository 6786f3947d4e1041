//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package conn

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes f's exclusive lock without waiting. flock locks belong to
// the open file, so a second open in the same process is refused too; the
// kernel drops the lock when the process dies.
func lockFile(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		for {
			lerr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
			if lerr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if errors.Is(lerr, syscall.EWOULDBLOCK) {
		return ErrSpoolInUse
	}
	return lerr
}

// openLockFile opens the lock file.
func openLockFile(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
}
