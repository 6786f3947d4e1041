//go:build !linux

package conn

import "os"

// datasync makes f's data reach stable storage. os.File.Sync is the
// platform's strongest: F_FULLFSYNC on macOS and iOS (whose fsync leaves
// data in the drive's cache), FlushFileBuffers on Windows, fsync elsewhere.
func datasync(f *os.File) error { return f.Sync() }
