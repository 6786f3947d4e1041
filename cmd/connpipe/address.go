package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unicode"
)

// An endpoint is a parsed ADDRESS: what to pass to net.Dial or net.Listen,
// and whether to speak TLS on top.
type endpoint struct {
	Scheme  string // "tcp", "udp", "unix", "tls" or "relp"
	Network string // for net.Dial: "tcp", "udp" or "unix"
	Address string // "host:port" (IPv6 hosts in brackets), or a socket path
	Host    string // the host of Address, without brackets; "" for unix
	Port    int    // 0 to 65535; 0 for unix
}

// TLS reports whether the endpoint speaks TLS over TCP.
func (e endpoint) TLS() bool { return e.Scheme == "tls" }

// Acks reports whether the endpoint acknowledges each line: RELP over TCP.
func (e endpoint) Acks() bool { return e.Scheme == "relp" }

// String returns the endpoint in canonical form, "scheme://address", which
// parseAddress maps back to the same endpoint.
func (e endpoint) String() string { return e.Scheme + "://" + e.Address }

// schemes maps each scheme accepted in an ADDRESS to its network.
var schemes = map[string]string{
	"tcp":  "tcp",
	"udp":  "udp",
	"unix": "unix",
	"tls":  "tcp",
	"relp": "tcp",
}

const schemeHint = "use tcp://, udp://, unix://, tls://, relp:// or host:port"

// maxUnixPath is the longest unix socket path: sun_path holds 108 bytes on
// Linux, including the terminating NUL.
const maxUnixPath = 107

// parseAddress parses an ADDRESS: tcp://host:port, udp://host:port,
// unix:///absolute/path, unix://./relative/path, unix://@abstract,
// tls://host:port, relp://host:port, or a bare
// host:port meaning TCP. The scheme is case-insensitive. The port must be a
// number from 0 to 65535 (callers that dial reject 0). An IPv6 host goes in
// brackets: tcp://[::1]:5000. Errors say what is wrong and how to write it.
func parseAddress(s string) (endpoint, error) {
	if s == "" {
		return endpoint{}, errors.New("empty ADDRESS: " + schemeHint)
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return endpoint{}, fmt.Errorf("ADDRESS %q contains spaces or control characters", s)
	}
	scheme, rest, found := strings.Cut(s, "://")
	if !found {
		// "tcp:host:5000" or "unix:/tmp/s": a scheme without its slashes.
		if name, after, ok := strings.Cut(s, ":"); ok {
			if _, known := schemes[strings.ToLower(name)]; known && !isDigits(after) {
				fixed := strings.ToLower(name) + "://" + strings.TrimLeft(after, "/")
				if strings.EqualFold(name, "unix") {
					fixed = "unix://" + after
					if !isUnixPath(after) {
						fixed = "unix://./" + after
					}
				}
				return endpoint{}, fmt.Errorf("missing \"//\" after %q in %q: write %s", name+":", s, fixed)
			}
		}
		return parseHostPort(s, "tcp", s)
	}
	if scheme == "" {
		return endpoint{}, fmt.Errorf("missing scheme in %q: %s", s, schemeHint)
	}
	scheme = strings.ToLower(scheme)
	if _, ok := schemes[scheme]; !ok {
		return endpoint{}, fmt.Errorf("unknown scheme %q in %q: %s", scheme, s, schemeHint)
	}
	if scheme == "unix" {
		return parseUnix(rest, s)
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		return endpoint{}, fmt.Errorf("unexpected %q in %q: write %s://host:port, with no path", rest[i:], s, scheme)
	}
	return parseHostPort(rest, scheme, s)
}

// parseUnix parses the path of a unix:// ADDRESS. An absolute path, a
// path starting with ./ or ../, or @name (Linux's abstract namespace) is
// accepted as it is; any other path is refused at once, because
// unix://tmp/s.sock is usually a mistake for unix:///tmp/s.sock and, taken
// as relative, would only fail when no server ever appears there.
func parseUnix(path, whole string) (endpoint, error) {
	switch {
	case path == "":
		return endpoint{}, fmt.Errorf("missing socket path in %q: write unix:///path/to/socket", whole)
	case len(path) > maxUnixPath:
		return endpoint{}, fmt.Errorf("unix socket path in %q is %d bytes long; the limit is %d", whole, len(path), maxUnixPath)
	case path == "~" || strings.HasPrefix(path, "~/"):
		home, err := os.UserHomeDir()
		if err != nil || !strings.HasPrefix(home, "/") {
			home = "/home/you"
		}
		return endpoint{}, fmt.Errorf("\"~\" is not expanded in %q: write the whole path, unix://%s%s", whole, home, path[1:])
	case !isUnixPath(path):
		return endpoint{}, fmt.Errorf("relative socket path in %q: write unix:///%s for /%s, or unix://./%s for a path relative to the current directory", whole, path, path, path)
	}
	return endpoint{Scheme: "unix", Network: "unix", Address: path}, nil
}

// isUnixPath reports whether path says unambiguously where the socket is:
// absolute, explicitly relative, or abstract.
func isUnixPath(path string) bool {
	for _, p := range []string{"/", "./", "../", "@"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// parseHostPort parses hp, the part of whole after the scheme.
func parseHostPort(hp, scheme, whole string) (endpoint, error) {
	bare := whole == hp
	form := scheme + "://host:port"
	if bare {
		form = "host:port"
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		var ae *net.AddrError
		switch {
		case errors.As(err, &ae) && ae.Err == "missing port in address" && isDigits(hp):
			return endpoint{}, fmt.Errorf("%q is a port without a host: write %s (or %s to listen on every interface)", whole, withScheme(scheme, bare, "127.0.0.1:"+hp), withScheme(scheme, bare, ":"+hp))
		case errors.As(err, &ae) && ae.Err == "missing port in address":
			if bare && (strings.HasPrefix(hp, "/") || strings.HasPrefix(hp, ".")) {
				return endpoint{}, fmt.Errorf("missing port in %q: for a unix socket write unix://%s", whole, hp)
			}
			return endpoint{}, fmt.Errorf("missing port in %q: write %s, e.g. %s", whole, form, example(scheme, hp, bare))
		case errors.As(err, &ae) && ae.Err == "too many colons in address":
			return endpoint{}, fmt.Errorf("cannot tell host from port in %q: put an IPv6 address in brackets, e.g. %s://[::1]:5000", whole, scheme)
		}
		return endpoint{}, fmt.Errorf("bad address %q: write %s", whole, form)
	}
	if port == "" {
		return endpoint{}, fmt.Errorf("missing port in %q: write %s, e.g. %s", whole, form, example(scheme, host, bare))
	}
	n, err := strconv.Atoi(port)
	if err != nil || !isDigits(port) || n > 65535 {
		return endpoint{}, fmt.Errorf("bad port %q in %q: want a number from 1 to 65535", port, whole)
	}
	if strings.ContainsAny(host, "/?#@[]\\") {
		return endpoint{}, fmt.Errorf("bad host %q in %q", host, whole)
	}
	return endpoint{
		Scheme:  scheme,
		Network: schemes[scheme],
		Address: net.JoinHostPort(host, strconv.Itoa(n)),
		Host:    host,
		Port:    n,
	}, nil
}

// withScheme writes hp as an ADDRESS: bare, or after scheme://.
func withScheme(scheme string, bare bool, hp string) string {
	if bare {
		return hp
	}
	return scheme + "://" + hp
}

// example suggests a complete address for host, which lacks a port.
func example(scheme, host string, bare bool) string {
	if host == "" {
		host = "localhost"
	}
	if strings.Contains(host, ":") {
		host = "[" + strings.Trim(host, "[]") + "]"
	}
	if bare {
		return host + ":5000"
	}
	return scheme + "://" + host + ":5000"
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
