//go:build !(unix || windows)

package conn

import "os"

// lockFile does nothing where the platform has no file lock (plan9, js,
// wasip1): the spool's own table still refuses a second open in this
// process, the only one that can run on js and wasip1.
func lockFile(*os.File) error { return nil }

// openLockFile opens the lock file.
func openLockFile(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
}
