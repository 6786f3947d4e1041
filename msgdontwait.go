//go:build unix && !aix

package conn

import "syscall"

const msgDontWait = syscall.MSG_DONTWAIT
