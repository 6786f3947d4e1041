//go:build !unix

package conn

import (
	"net"
	"time"
)

// How the liveness check asks the kernel: see liveness_unix.go.
type probeKind uint8

const (
	probeNative probeKind = iota
	probePeek
)

// prober is the kernel's view of a socket, which needs a Unix. Elsewhere
// (Windows, Plan 9, WebAssembly) there is none: Write writes without
// checking, and the write deadline follows the rules for connections
// without a prober.
//
// On Windows none of the Unix means would do, and nothing here can test
// another: a peek on Go's sockets, which are overlapped but not
// non-blocking there, would block the Write; WSAPoll misreported failed
// connections until Windows 10 2004 (curl gave it up for that), and a check
// built on it could be run on no machine of this project's CI.
type prober struct{ stream bool }

func newProber(net.Conn, probeKind) *prober { return nil }

func (*prober) check() (fin bool, err error)           { return false, nil }
func (*prober) tellsQuiet() bool                       { return false }
func (*prober) quiet() bool                            { return false }
func (*prober) awaitReset(_, _, _ time.Duration) error { return nil }
