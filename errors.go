package conn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
)

// ErrConnectionUnavailable is returned by the Manager's Write method when the
// manager cannot yield a good connection: no connection is up and none could
// be made within the bounded wait that Write allows. Nothing was written.
//
// A Manager made by NewManager or NewDefaultManager returns exactly this
// value, as go-kit's does, so that code comparing with == keeps working.
// A Manager made by New returns an *UnavailableError, which matches it
// with errors.Is and carries the cause.
var ErrConnectionUnavailable = errors.New("connection unavailable")

// An UnavailableError is what Write returns, for a Manager made by New,
// when it had no connection to write on: nothing was written. It matches
// ErrConnectionUnavailable with errors.Is, and its text names the cause
// ("connection unavailable: dial tcp: address localhost: missing port in
// address"). Get the cause with errors.As:
//
//	var ue *conn.UnavailableError
//	if errors.As(err, &ue) { ... ue.Cause ... }
//
// The cause is not wrapped (there is no Unwrap): a Write that wrote
// nothing must not match the errors of one that timed out partway, say
// os.ErrDeadlineExceeded, because an earlier connection died of one.
type UnavailableError struct {
	// Cause is the latest dial failure or loss of a connection before the
	// Write; for a Write that found its connection dead before writing,
	// what the liveness check found.
	Cause error
}

func (e *UnavailableError) Error() string {
	if e.Cause == nil {
		return ErrConnectionUnavailable.Error()
	}
	return "connection unavailable: " + e.Cause.Error()
}

// Is reports whether target is ErrConnectionUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrConnectionUnavailable }

// IsPermanent reports whether err, a dial failure or what Write returned
// (an UnavailableError is judged by its cause), is one that dialing again
// will not fix without a change of configuration, of the clock or of the
// peer: a malformed address, an unknown network or service name, a TLS
// peer whose certificate does not verify (expired or not yet valid
// included), that does not speak TLS, or that refuses the handshake with
// an alert (a protocol version or cipher suite in common missing, a
// client certificate required). A name that does not resolve is not
// permanent (it may be registered later), nor is a refused or timed-out
// connection, nor a peer's "internal error" alert. A round over several
// endpoints (an *EndpointsError) is permanent only if each failure is. The
// Manager logs
// permanent dial failures at level error and keeps retrying on its
// backoff; connpipe gives up on them at once.
func IsPermanent(err error) bool {
	if ue, ok := err.(*UnavailableError); ok {
		err = ue.Cause
	}
	if ee, ok := err.(*EndpointsError); ok {
		// Another endpoint may yet accept: permanent only if none can.
		for _, e := range ee.Errs {
			if !IsPermanent(e) {
				return false
			}
		}
		return len(ee.Errs) > 0
	}
	var (
		dns      *net.DNSError
		op       *net.OpError
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
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		// crypto/tls reports an alert from the peer so; the alert's type
		// is unexported. These two may pass.
		msg := op.Err.Error()
		return !strings.HasSuffix(msg, "internal error") && !strings.HasSuffix(msg, "user canceled")
	}
	if errors.As(err, &dns) && dns.Err == "unknown port" {
		return true
	}
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
