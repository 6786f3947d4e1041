//go:build !plan9

package conn

import "syscall"

// The system's errors for a datagram too large for the path (the message
// is at fault, not the connection) and for a port nobody listens on (a
// connected datagram socket learns it from an ICMP answer).
var (
	errMsgSize error = syscall.EMSGSIZE
	errRefused error = syscall.ECONNREFUSED
)
