//go:build unix

package conn

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

func TestSyncDirReportsAMissingDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := syncDir(dir); err != nil {
		t.Fatalf("syncDir of a directory: %v", err)
	}
	if err := syncDir(filepath.Join(dir, "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("syncDir of a missing directory: %v, want fs.ErrNotExist", err)
	}
}
