package conn

import "errors"

// ErrConnectionUnavailable is returned by the Manager's Write method when the
// manager cannot yield a good connection: no connection is up and none could
// be made within the bounded wait that Write allows. Nothing was written.
var ErrConnectionUnavailable = errors.New("connection unavailable")

// ErrClosed is returned by Write after Close, and by a Write that Close
// interrupted. Match it with errors.Is.
var ErrClosed = errors.New("conn: manager closed")

// errNilConn is the dial error recorded when a Dialer returns neither a
// connection nor an error.
var errNilConn = errors.New("conn: dialer returned a nil connection and a nil error")

// errPeerClosed is the cause recorded when the liveness check finds that the
// peer closed the connection.
var errPeerClosed = errors.New("conn: peer closed the connection")
