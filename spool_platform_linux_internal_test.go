//go:build linux

package conn

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestDatasyncReportsAClosedFileOrNone(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := datasync(f); err != nil {
		t.Fatalf("datasync of an open file: %v", err)
	}
	f.Close()
	var pe *os.PathError
	if err := datasync(f); err == nil || errors.As(err, &pe) {
		t.Errorf("datasync of a closed file: %v, want the descriptor's error (no fdatasync)", err)
	}
	if err := datasync(nil); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("datasync of no file: %v, want os.ErrInvalid", err)
	}
}

func TestDatasyncReportsAFileThatCannotSync(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var pe *os.PathError
	if err := datasync(w); !errors.As(err, &pe) || pe.Op != "fdatasync" || !errors.Is(err, syscall.EINVAL) {
		t.Errorf("datasync of a pipe: %v, want fdatasync's EINVAL", err)
	}
}
