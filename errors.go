package conn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
)

// ErrConnectionUnavailable is returned by the Manager's Write method when the
// manager cannot yield a good connection: no connection is up and none could
// be made within the bounded wait that Write allows. Nothing was written.
//
// A Manager made by NewManager or NewDefaultManager returns exactly this
// value, as go-kit's does, so that code comparing with == keeps working.
// A Manager made by New returns an error that matches it with errors.Is
// and carries the cause: the latest dial failure or loss ("connection
// unavailable: dial tcp: address localhost: missing port in address"),
// reachable with errors.Unwrap and errors.As.
var ErrConnectionUnavailable = errors.New("connection unavailable")

// unavailableError is ErrConnectionUnavailable with its cause.
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string        { return "connection unavailable: " + e.cause.Error() }
func (e *unavailableError) Is(target error) bool { return target == ErrConnectionUnavailable }
func (e *unavailableError) Unwrap() error        { return e.cause }

// IsPermanent reports whether err, a dial failure or what Write returned,
// is one that dialing again will not fix without a change of configuration
// or of the peer: a malformed address, an unknown network, or a TLS peer
// whose certificate does not verify or that does not speak TLS. A name
// that does not resolve is not permanent (it may be registered later),
// nor is a refused or timed-out connection. The Manager logs permanent
// dial failures at level error and keeps retrying on its backoff;
// connpipe gives up on them at once.
func IsPermanent(err error) bool {
	var (
		addr     *net.AddrError
		parse    *net.ParseError
		network  net.UnknownNetworkError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
		alert    tls.AlertError
	)
	return errors.As(err, &addr) || errors.As(err, &parse) || errors.As(err, &network) ||
		errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &record) || errors.As(err, &alert)
}

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
