package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// tlsHint says what to do about err, a dial failure that retrying will not
// fix; "" if there is nothing specific to say.
func tlsHint(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown):
		return "the server's certificate is not signed by a CA this machine trusts: give its CA certificate with -ca FILE"
	case errors.As(err, &hostname):
		return fmt.Sprintf("the server's certificate is not valid for %q", hostname.Host)
	case errors.As(err, &invalid):
		return "the server's certificate is not valid (expired, or not meant for a server)"
	case errors.As(err, &record):
		return "the server does not speak TLS: for a plain connection use tcp://"
	}
	return ""
}
