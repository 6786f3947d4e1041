package conn

import "errors"

// ErrConnectionUnavailable is returned by the Manager's Write method when the
// manager cannot yield a good connection: no connection is up and none could
// be made within the bounded wait that Write allows. Nothing was written.
var ErrConnectionUnavailable = errors.New("connection unavailable")

// ErrClosed is returned by Write after Close, and by a Write that Close
// interrupted: the Manager's, or a BatchWriter's (whose error says so).
// Match it with errors.Is.
var ErrClosed = errors.New("conn: manager closed")

// errWriterClosed is a BatchWriter's Write after its Close. It matches
// ErrClosed, but says which of the two was closed: the Manager may well be
// open.
var errWriterClosed error = writerClosedError{}

type writerClosedError struct{}

func (writerClosedError) Error() string        { return "conn: batch writer closed" }
func (writerClosedError) Is(target error) bool { return target == ErrClosed }

// errNilConn is the dial error recorded when a Dialer returns neither a
// connection nor an error.
var errNilConn = errors.New("conn: dialer returned a nil connection and a nil error")

// errPeerClosed is the cause recorded when the liveness check finds that the
// peer closed the connection.
var errPeerClosed = errors.New("conn: peer closed the connection")
