package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// clientTLS returns send's TLS configuration: the server's certificate is
// verified against the system's CAs, or those of -ca, for the name
// -servername or else the host of the address dialed (see
// tlsDialer.DialContext: with several ADDRESSes each is verified for its
// own host, so the configuration names none unless -servername does);
// -cert and -key give a client certificate. Its errors are about the
// files (exit status 1); the flags were checked before.
func clientTLS(cfg *sendConfig) (*tls.Config, error) {
	c := &tls.Config{
		ServerName:         cfg.serverName,
		InsecureSkipVerify: cfg.insecure,
		MinVersion:         tls.VersionTLS12,
	}
	if cfg.ca != "" {
		pool, err := loadCAs(cfg.ca, "-ca")
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if cfg.cert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.cert, cfg.key)
		if err != nil {
			return nil, fmt.Errorf("cannot load the client certificate (-cert %s -key %s): %v", cfg.cert, cfg.key, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// verdictWait bounds how long a TLS 1.3 dial waits for the server's
// verdict on the client certificate it asked for, when no session ticket
// comes to say that it was accepted.
const verdictWait = time.Second

// A tlsDialer dials TLS connections for send. It makes sure that a server
// that asked for a client certificate has accepted it before the
// connection is used: in TLS 1.3 the client's handshake ends before the
// server has checked the certificate, and a server that refuses it
// closes the connection after the client may have written on it, taking
// the lines with it. So when the server asked, the dial waits for its
// verdict: a refusal (an alert: "certificate required", "bad
// certificate") fails the dial; a session ticket, which a server sends
// once it has accepted the client, or verdictWait without either, lets
// it through.
type tlsDialer struct {
	config *tls.Config
}

func (d *tlsDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	cfg := d.config.Clone()
	if cfg.ServerName == "" {
		// No -servername: verify the certificate for the host of the
		// address dialed, this endpoint's, not the first ADDRESS's.
		// crypto/tls would take it from address too, but with the
		// brackets of an IPv6 host.
		if host, _, err := net.SplitHostPort(address); err == nil {
			cfg.ServerName = host
		}
	}
	var asked atomic.Bool
	certs := cfg.Certificates
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		asked.Store(true)
		if len(certs) > 0 {
			return &certs[0], nil
		}
		return new(tls.Certificate), nil // none: the server may still accept that
	}
	ticket := make(chan struct{}, 1)
	cfg.ClientSessionCache = ticketSignal(ticket)
	c, err := (&tls.Dialer{NetDialer: new(net.Dialer), Config: cfg}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if !asked.Load() || tc.ConnectionState().Version < tls.VersionTLS13 {
		return c, nil // in TLS 1.2 the handshake includes the verdict
	}
	if err := awaitVerdict(ctx, tc, ticket); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// awaitVerdict reads from c, which expects nothing but the server's
// verdict on the client certificate: an alert, or a session ticket (then
// ticket receives). It returns the alert's error, or nil.
func awaitVerdict(ctx context.Context, c *tls.Conn, ticket <-chan struct{}) error {
	deadline := time.Now().Add(verdictWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	read := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := c.Read(b[:]) // the ticket is handled inside; a server sends no data
		read <- err
	}()
	var err error
	select {
	case err = <-read:
	case <-ticket:
		c.SetReadDeadline(time.Now())
		err = <-read
	case <-ctx.Done():
		c.SetReadDeadline(time.Now())
		<-read
		return ctx.Err()
	}
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil // accepted, or silent: in that case the write will tell
	}
	return fmt.Errorf("the server refused the TLS client: %w", err)
}

// ticketSignal is a tls.ClientSessionCache that keeps nothing, so that
// sessions are never resumed, and signals each session ticket received.
type ticketSignal chan<- struct{}

func (ticketSignal) Get(string) (*tls.ClientSessionState, bool) { return nil, false }

func (t ticketSignal) Put(_ string, cs *tls.ClientSessionState) {
	if cs != nil {
		select {
		case t <- struct{}{}:
		default:
		}
	}
}

// loadCAs reads the PEM certificates in path, named by flag in errors.
func loadCAs(path, flag string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s file: %v", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s file %q holds no PEM certificate", flag, path)
	}
	return pool, nil
}

// A selfSigned is the certificate listen makes for itself when it serves
// TLS without -cert: its private key lives only in the process.
type selfSigned struct {
	cert        tls.Certificate
	names       []string // what it is valid for
	fingerprint string   // SHA-256 of the certificate, hex pairs with colons
	path        string   // where its PEM is written for send -ca
	dir         string   // a temporary directory to remove at the end; "" if none
}

// serverTLS returns listen's TLS configuration: the certificate of -cert
// and -key, or a self-signed one made now for host (the second result,
// whose PEM is written to -cert-out or to a temporary file); with -ca,
// clients must present a certificate signed by one of its CAs. Its
// errors are about files (exit status 1).
func serverTLS(cfg *listenConfig, host string) (*tls.Config, *selfSigned, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.ca != "" {
		pool, err := loadCAs(cfg.ca, "-ca")
		if err != nil {
			return nil, nil, err
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if cfg.cert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.cert, cfg.key)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot load the server certificate (-cert %s -key %s): %v", cfg.cert, cfg.key, err)
		}
		c.Certificates = []tls.Certificate{pair}
		return c, nil, nil
	}
	ss, err := newSelfSigned(host, time.Now())
	if err != nil {
		return nil, nil, err
	}
	if err := ss.save(cfg.certOut); err != nil {
		return nil, nil, err
	}
	c.Certificates = []tls.Certificate{ss.cert}
	return c, ss, nil
}

// selfSignedLife is how long a self-signed certificate is valid. Its key
// dies with the process, so a long life gives nobody anything.
const selfSignedLife = 365 * 24 * time.Hour

// newSelfSigned makes an ECDSA P-256 certificate, signed by its own key,
// for localhost, 127.0.0.1, ::1 and host (a name or an IP address; empty
// or unspecified adds nothing).
func newSelfSigned(host string, now time.Time) (*selfSigned, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("making a certificate: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("making a certificate: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "connpipe listen, self-signed for one run"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedLife),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root: send -ca trusts it
	}
	if ip := net.ParseIP(strings.Split(host, "%")[0]); ip != nil {
		if !ip.IsUnspecified() && !ip.IsLoopback() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	} else if host != "" && host != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("making a certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("making a certificate: %v", err)
	}
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return &selfSigned{
		cert:        tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		names:       names,
		fingerprint: fingerprint(der),
	}, nil
}

// save writes the certificate (never the key) as PEM to path, or, if path
// is "", to a new temporary directory that remove deletes.
func (s *selfSigned) save(path string) error {
	if path == "" {
		dir, err := os.MkdirTemp("", "connpipe-listen-")
		if err != nil {
			return fmt.Errorf("writing the certificate: %v", err)
		}
		s.dir, path = dir, filepath.Join(dir, "cert.pem")
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Certificate[0]})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		s.remove()
		return fmt.Errorf("writing the certificate: %v", err)
	}
	s.path = path
	return nil
}

// remove deletes the temporary directory, if save made one.
func (s *selfSigned) remove() {
	if s != nil && s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// fingerprint is the SHA-256 of der as colon-separated hex pairs, as
// openssl x509 -fingerprint -sha256 prints it.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// tlsHint says what to do about err, a dial failure that retrying will not
// fix; "" if there is nothing specific to say.
func tlsHint(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
		remote   *net.OpError
	)
	switch {
	case errors.As(err, &unknown):
		return "the server's certificate is not signed by a CA this machine trusts: give its CA certificate with -ca FILE"
	case errors.As(err, &hostname):
		return fmt.Sprintf("the server's certificate is not valid for %q: give a name it is valid for with -servername NAME", hostname.Host)
	case errors.As(err, &invalid):
		return "the server's certificate is not valid (expired, or not meant for a server)"
	case errors.As(err, &record):
		return "the server does not speak TLS: for a plain connection use tcp://"
	case errors.As(err, &remote) && remote.Op == "remote error" && remote.Err != nil:
		// An alert from the server; crypto/tls does not export its type.
		switch msg := remote.Err.Error(); {
		case strings.HasSuffix(msg, "certificate required"):
			return "the server wants a client certificate: give it with -cert and -key"
		case strings.Contains(msg, "certificate"): // bad, unknown, expired, revoked...
			return "the server does not accept the client certificate of -cert"
		}
		return "the server refused the TLS handshake: it may have no protocol version or cipher suite in common with connpipe"
	}
	return ""
}
