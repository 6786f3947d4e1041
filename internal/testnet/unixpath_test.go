package testnet

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFreeUnixPathIsShortAndCleanedUp(t *testing.T) {
	var dir string
	t.Run("inner", func(t *testing.T) {
		p := FreeUnixPath(t)
		if len(p) > maxUnixPath {
			t.Fatalf("path %q too long", p)
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("path %q exists already (err %v)", p, err)
		}
		dir = filepath.Dir(p)
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("directory: %v", err)
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %q not removed by cleanup (err %v)", dir, err)
	}
}
