//go:build aix || illumos || solaris

package conn

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// lockFile takes f's exclusive lock without waiting: an fcntl lock, which
// belongs to the process (the spool's own table refuses a second open in
// the same process); the kernel drops it when the process dies.
func lockFile(f *os.File) error {
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
	err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return ErrSpoolInUse
	}
	return err
}

// openLockFile opens the lock file.
func openLockFile(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
}
