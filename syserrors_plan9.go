package conn

import "errors"

// Plan 9 has no error numbers: its network errors are strings, and no
// error it returns matches these. A datagram too large and a refused port
// are there failures like any other.
var (
	errMsgSize = errors.New("message too long")
	errRefused = errors.New("connection refused")
)
