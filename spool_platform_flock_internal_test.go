//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package conn

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLockFileRefusesASecondOpenOfTheFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), spoolLockName)
	first, err := openLockFile(name)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := openLockFile(name)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := lockFile(first); err != nil {
		t.Fatalf("the first lock: %v", err)
	}
	if err := lockFile(second); err != ErrSpoolInUse {
		t.Fatalf("a second open of a locked file: %v, want ErrSpoolInUse", err)
	}
	first.Close() // the lock goes with it
	if err := lockFile(second); err != nil {
		t.Errorf("once the first is closed: %v, want the lock", err)
	}
}

func TestLockFileReportsAClosedFileOrNone(t *testing.T) {
	f, err := openLockFile(filepath.Join(t.TempDir(), spoolLockName))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := lockFile(f); err == nil || errors.Is(err, ErrSpoolInUse) {
		t.Errorf("lockFile of a closed file: %v, want the descriptor's error", err)
	}
	if err := lockFile(nil); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("lockFile of no file: %v, want os.ErrInvalid", err)
	}
}
