//go:build !linux

package bench

import "os"

// fdatasync is the platform's strongest sync where there is no fdatasync.
func fdatasync(f *os.File) error { return f.Sync() }
