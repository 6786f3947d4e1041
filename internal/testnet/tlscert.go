package testnet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// tlsServerName is the name the client config verifies; the certificate
// carries it as an IP SAN.
const tlsServerName = "127.0.0.1"

// SelfSignedTLS generates a fresh ECDSA P-256 self-signed certificate for
// 127.0.0.1 (IP SAN; also ::1 and DNS "localhost"), valid from a minute
// ago for one hour, and returns a server config presenting it and a client
// config that trusts exactly it through RootCAs, with ServerName
// "127.0.0.1" and full verification (no InsecureSkipVerify). Both require
// TLS 1.2 or later. It fails the test if generation fails. The configs
// are new values the caller may modify; they are safe for concurrent use
// once no longer modified, as crypto/tls requires.
func SelfSignedTLS(tb testing.TB) (server *tls.Config, client *tls.Config) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("testnet: SelfSignedTLS: key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatalf("testnet: SelfSignedTLS: serial: %v", err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "testnet self-signed"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("testnet: SelfSignedTLS: certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testnet: SelfSignedTLS: parse: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS12,
	}
	client = &tls.Config{
		RootCAs:    pool,
		ServerName: tlsServerName,
		MinVersion: tls.VersionTLS12,
	}
	return server, client
}
