//go:build !unix

package conn

// syncDir does nothing where directories cannot be synced: on Windows,
// NTFS journals the names of files, and a directory cannot be opened for
// FlushFileBuffers without backup privileges.
func syncDir(string) error { return nil }
