package main

import (
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want endpoint
	}{
		{"tcp://logs.internal:5000", endpoint{"tcp", "tcp", "logs.internal:5000", "logs.internal", 5000}},
		{"logs.internal:5000", endpoint{"tcp", "tcp", "logs.internal:5000", "logs.internal", 5000}},
		{"127.0.0.1:1", endpoint{"tcp", "tcp", "127.0.0.1:1", "127.0.0.1", 1}},
		{":5000", endpoint{"tcp", "tcp", ":5000", "", 5000}},
		{"udp://10.0.0.1:514", endpoint{"udp", "udp", "10.0.0.1:514", "10.0.0.1", 514}},
		{"tls://collector:6514", endpoint{"tls", "tcp", "collector:6514", "collector", 6514}},
		{"TLS://Collector:6514", endpoint{"tls", "tcp", "Collector:6514", "Collector", 6514}},
		{"tcp://[::1]:5000", endpoint{"tcp", "tcp", "[::1]:5000", "::1", 5000}},
		{"[fe80::1%eth0]:80", endpoint{"tcp", "tcp", "[fe80::1%eth0]:80", "fe80::1%eth0", 80}},
		{"tcp://h:05000", endpoint{"tcp", "tcp", "h:5000", "h", 5000}},
		{"tcp://127.0.0.1:0", endpoint{"tcp", "tcp", "127.0.0.1:0", "127.0.0.1", 0}},
		{"tcp:5000", endpoint{"tcp", "tcp", "tcp:5000", "tcp", 5000}}, // a host named tcp
		{"unix:///run/collector.sock", endpoint{"unix", "unix", "/run/collector.sock", "", 0}},
		{"unix://./relative/s.sock", endpoint{"unix", "unix", "./relative/s.sock", "", 0}},
		{"unix://../s.sock", endpoint{"unix", "unix", "../s.sock", "", 0}},
		{"unix://@abstract", endpoint{"unix", "unix", "@abstract", "", 0}},
	} {
		got, err := parseAddress(tt.in)
		if err != nil {
			t.Errorf("parseAddress(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("parseAddress(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseAddressErrors(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string // in the error
	}{
		{"htp://x:1", `unknown scheme "htp" in "htp://x:1": use tcp://, udp://, unix://, tls://, relp:// or host:port`},
		{"http://x:80", `unknown scheme "http"`},
		{"localhost", `missing port in "localhost": write host:port, e.g. localhost:5000`},
		{"localhost:", `missing port in "localhost:"`},
		{"tcp://localhost", `missing port in "tcp://localhost": write tcp://host:port, e.g. tcp://localhost:5000`},
		{"tls://[::1]", `e.g. tls://[::1]:5000`},
		{"tcp:localhost:5000", `missing "//" after "tcp:" in "tcp:localhost:5000": write tcp://localhost:5000`},
		{"unix:/tmp/s", `write unix:///tmp/s`},
		{"unix:s.sock", `write unix://./s.sock`},
		{"unix://tmp/s.sock", `relative socket path in "unix://tmp/s.sock": write unix:///tmp/s.sock for /tmp/s.sock, or unix://./tmp/s.sock for a path relative to the current directory`},
		{"unix://s.sock", `or unix://./s.sock for a path relative`},
		{"unix://~/s.sock", `"~" is not expanded in "unix://~/s.sock": write the whole path, unix:///`},
		{"5000", `"5000" is a port without a host: write 127.0.0.1:5000 (or :5000 to listen on every interface)`},
		{"tcp://5000", `"tcp://5000" is a port without a host: write tcp://127.0.0.1:5000 (or tcp://:5000 to listen on every interface)`},
		{"/tmp/s.sock", `for a unix socket write unix:///tmp/s.sock`},
		{"::1:5000", `put an IPv6 address in brackets`},
		{"tcp://h:99999", `bad port "99999"`},
		{"tcp://h:-1", `bad port "-1"`},
		{"tcp://h:+1", `bad port "+1"`},
		{"udp://h:syslog", `bad port "syslog"`},
		{"tcp://h:5000/path", `unexpected "/path"`},
		{"tcp://h:5000?x", `unexpected "?x"`},
		{"tcp:///var/log/s", `unexpected "/var/log/s" in "tcp:///var/log/s": write tcp://host:port, with no path`},
		{"tcp://user@h:5000", `bad host "user@h"`},
		{"tcp://[::1:5000", `bad address`},
		{"unix://", `missing socket path`},
		{"unix:///" + strings.Repeat("x", 200), `the limit is 107`},
		{"tcp://a b:1", `contains spaces`},
		{"tcp://a\x00:1", `control characters`},
		{"://h:1", `missing scheme`},
		{"", `empty ADDRESS`},
	} {
		_, err := parseAddress(tt.in)
		if err == nil {
			t.Errorf("parseAddress(%q) succeeded, want an error with %q", tt.in, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseAddress(%q) = %q, want it to contain %q", tt.in, err, tt.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("parseAddress(%q): error %q spans lines", tt.in, err)
		}
	}
}

// FuzzParseAddress checks that parseAddress never panics, and that what it
// accepts is consistent and round-trips through String.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"tcp://logs.internal:5000", "udp://10.0.0.1:514", "unix:///tmp/s", "tls://h:1",
		"h:1", "[::1]:80", "tcp://[fe80::1%25eth0]:1", "htp://x:1", "localhost", "tcp:h:1",
		"unix:/x", "://", "tcp://:0", "TCP://H:65535", "tcp://h:65536", "unix://@a", "unix://./a", "unix://a", "5000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseAddress(s)
		if err != nil {
			if e != (endpoint{}) {
				t.Fatalf("parseAddress(%q) returned %+v with error %v", s, e, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("parseAddress(%q): error %q spans lines", s, err)
			}
			return
		}
		if schemes[e.Scheme] != e.Network || e.Network == "" {
			t.Fatalf("parseAddress(%q) = %+v: scheme and network disagree", s, e)
		}
		if e.Address == "" || e.Port < 0 || e.Port > 65535 {
			t.Fatalf("parseAddress(%q) = %+v", s, e)
		}
		if e.Network == "unix" && (e.Host != "" || e.Port != 0) {
			t.Fatalf("parseAddress(%q) = %+v: a unix address with a host or port", s, e)
		}
		again, err := parseAddress(e.String())
		if err != nil {
			t.Fatalf("parseAddress(%q) = %+v, but its String %q does not parse: %v", s, e, e.String(), err)
		}
		if again != e {
			t.Fatalf("round trip: %q → %+v → %q → %+v", s, e, e.String(), again)
		}
		if !strings.Contains(s, "://") && e.Scheme != "tcp" {
			t.Fatalf("parseAddress(%q) = %+v: a bare address must mean TCP", s, e)
		}
	})
}
