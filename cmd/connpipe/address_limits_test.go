package main

import (
	"strings"
	"testing"
)

// TestParseAddressLimits: each limit of an ADDRESS on both of its sides.
// The highest port and the longest unix socket path are accepted, one
// more is refused; a space or a control character is refused wherever it
// is, the first byte included.
func TestParseAddressLimits(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want endpoint
	}{
		{"tcp://h:65535", endpoint{"tcp", "tcp", "h:65535", "h", 65535}},
		{"h:65535", endpoint{"tcp", "tcp", "h:65535", "h", 65535}},
		{"unix:///" + strings.Repeat("x", maxUnixPath-1), endpoint{"unix", "unix", "/" + strings.Repeat("x", maxUnixPath-1), "", 0}},
	} {
		got, err := parseAddress(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseAddress(%.40q...) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, tt := range []struct {
		in   string
		want string // in the error
	}{
		{"tcp://h:65536", `bad port "65536" in "tcp://h:65536": want a number from 1 to 65535`},
		{"h:65536", `bad port "65536"`},
		{"unix:///" + strings.Repeat("x", maxUnixPath), `is 108 bytes long; the limit is 107`},
		{" tcp://h:1", `contains spaces or control characters`},
		{"\ttcp://h:1", `contains spaces or control characters`},
		{"\x00h:1", `contains spaces or control characters`},
		{"h:1 ", `contains spaces or control characters`},
	} {
		_, err := parseAddress(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseAddress(%.40q...) = %v, want an error with %q", tt.in, err, tt.want)
		}
	}
}

// TestUnixTildeHint: unix://~/... is refused with the whole path written
// out from the home directory, when there is one that is absolute; else
// with a stand-in.
func TestUnixTildeHint(t *testing.T) {
	for _, tt := range []struct {
		home string
		want string
	}{
		{"/srv/someone", "write the whole path, unix:///srv/someone/s.sock"},
		{"relative/home", "write the whole path, unix:///home/you/s.sock"},
		{"", "write the whole path, unix:///home/you/s.sock"},
	} {
		t.Setenv("HOME", tt.home)        // Unix
		t.Setenv("USERPROFILE", tt.home) // Windows
		t.Setenv("home", tt.home)        // Plan 9
		_, err := parseAddress("unix://~/s.sock")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("with home %q: parseAddress(unix://~/s.sock) = %v, want an error with %q", tt.home, err, tt.want)
		}
	}
}
