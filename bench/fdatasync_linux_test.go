package bench

import (
	"os"
	"syscall"
)

// fdatasync is what `dd conv=fdatasync` calls at the end.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
