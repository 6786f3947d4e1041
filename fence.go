package conn

import (
	"cmp"
	"net"
	"reflect"
	"syscall"
)

// A switch closes the connection it replaces for writing once the Writes
// under way on it have returned, so that none is cut short. Either the
// connection provides the moment itself, a fence, or the Writes count
// themselves in and out of their link (link.enter), two atomic additions
// a Write (BenchmarkWriteMem, "conn-endpoints").
//
// The net package's sockets serialise their Writes on the descriptor's
// write lock, and syscall.RawConn's Write runs its function under that
// lock: a stream socket shut down for writing there is shut down between
// two Writes, after the one under way has returned whole, and a Write that
// comes later fails having written nothing, and moves to the link that
// replaced it (Manager.failed). A *tls.Conn's CloseWrite does the same
// under the lock of its output (its handshake is complete: connect does
// it at the dial). A datagram socket needs no lock: a
// datagram goes whole or not at all, and a socket closed under a Write is
// released only when the Write has returned. Writes on these connections
// cost what they cost with one endpoint. Any other connection (an
// in-memory one, a type of the user's) makes no such promise, and is
// counted. TestFenceWaitsForTheWriteUnderWay and
// TestRotationLetsAWriteBlockedOnTheSocketFinishWhole check the promises
// on each Go release.

// A fence is how a switch closes a link's connection between two Writes.
type fence uint8

const (
	fenceNone       fence = iota // none: its Writes count themselves (switch.go)
	fenceShutdown                // a stream socket: shut it down for writing under its write lock
	fenceCloseWrite              // a *tls.Conn: its CloseWrite waits for the Write under way
	fenceClose                   // a datagram socket: close it
)

// fenceOf returns the fence of c. Only the standard library's own types
// qualify: a type that embeds one may write in several steps.
func fenceOf(c net.Conn) fence {
	switch c := c.(type) {
	case *net.UnixConn:
		if unixDatagram(c) {
			return fenceClose
		}
		if canShutdown {
			return fenceShutdown
		}
		return fenceNone
	case *net.TCPConn:
		if canShutdown {
			return fenceShutdown
		}
		return fenceNone
	case *net.UDPConn, *net.IPConn:
		return fenceClose
	}
	if isTLSConn(c) {
		return fenceCloseWrite
	}
	return fenceNone
}

// unixDatagram reports whether c is a datagram socket, by the network its
// addresses name (an unnamed end may have none).
func unixDatagram(c *net.UnixConn) bool {
	for _, a := range []net.Addr{c.LocalAddr(), c.RemoteAddr()} {
		if ua, ok := a.(*net.UnixAddr); ok && ua != nil {
			return ua.Net == "unixgram"
		}
	}
	return false
}

// isTLSConn reports whether c is a *tls.Conn, without making every program
// that uses this package link crypto/tls.
func isTLSConn(c net.Conn) bool {
	t := reflect.TypeOf(c)
	return t != nil && t.Kind() == reflect.Pointer && t.Elem().PkgPath() == "crypto/tls" && t.Elem().Name() == "Conn"
}

// shutdownBetweenWrites shuts c down for writing as soon as no Write is
// under way on it. It waits for a Write under way, and returns an error
// without waiting longer once c is closed.
func shutdownBetweenWrites(c syscall.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = shutdownWrite(fd)
		return true
	})
	return cmp.Or(err, serr) // serr is nil unless the function ran
}
