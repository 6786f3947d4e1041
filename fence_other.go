//go:build !unix && !windows

package conn

import "errors"

// canShutdown: the net package's sockets here (js, wasip1, plan9) offer no
// descriptor to shut down; their Writes are counted.
const canShutdown = false

func shutdownWrite(uintptr) error { return errors.ErrUnsupported }
