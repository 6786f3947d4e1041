//go:build unix

package conn

import "os"

// syncDir makes the creation, renaming and removal of files in dir
// survive a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
