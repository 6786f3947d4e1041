//go:build !linux

package conn

import (
	"net"
	"time"
)

// prober is the kernel's view of a socket, which needs Linux's POLLRDHUP
// and SIOCOUTQ. Elsewhere there is none: Write writes without checking, and
// the write deadline follows the rules for connections without a socket.
type prober struct{ stream bool }

func newProber(net.Conn) *prober { return nil }

func (*prober) check() (fin bool, err error)        { return false, nil }
func (*prober) quiet() bool                         { return false }
func (*prober) awaitReset(_, _ time.Duration) error { return nil }
