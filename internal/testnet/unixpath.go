package testnet

import (
	"os"
	"path/filepath"
	"testing"
)

// maxUnixPath is the longest socket path accepted: sun_path holds 108 bytes
// on Linux (104 on the BSDs) including the terminating NUL.
const maxUnixPath = 100

// FreeUnixPath returns a short, unused path for a unix socket inside a fresh
// directory made with os.MkdirTemp (t.TempDir paths can exceed the 108-byte
// sun_path limit). Nothing is created at the path itself. The directory and
// anything in it are removed by tb.Cleanup. Safe for concurrent use; it
// fails the test if the directory cannot be made or the path is too long.
func FreeUnixPath(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "cn")
	if err != nil {
		tb.Fatalf("testnet: temp dir for unix socket: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	if len(path) > maxUnixPath {
		tb.Fatalf("testnet: unix socket path %q is %d bytes, limit %d (set TMPDIR shorter)", path, len(path), maxUnixPath)
	}
	return path
}
