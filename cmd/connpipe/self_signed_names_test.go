package main

import (
	"slices"
	"testing"
	"time"
)

// TestSelfSignedNames: the certificate listen makes without -cert is valid
// for localhost, 127.0.0.1, ::1 and the host it listens on, each named
// once: a name other than localhost is added, an address other than a
// loopback or unspecified one too; an empty host adds nothing.
func TestSelfSignedNames(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		host  string
		names []string
	}{
		{"", []string{"localhost", "127.0.0.1", "::1"}},
		{"localhost", []string{"localhost", "127.0.0.1", "::1"}},
		{"logs.example", []string{"localhost", "logs.example", "127.0.0.1", "::1"}},
		{"127.0.0.1", []string{"localhost", "127.0.0.1", "::1"}},
		{"0.0.0.0", []string{"localhost", "127.0.0.1", "::1"}},
		{"10.1.2.3", []string{"localhost", "127.0.0.1", "::1", "10.1.2.3"}},
	} {
		ss, err := newSelfSigned(tt.host, time.Now())
		if err != nil {
			t.Errorf("newSelfSigned(%q): %v", tt.host, err)
			continue
		}
		if !slices.Equal(ss.names, tt.names) {
			t.Errorf("newSelfSigned(%q) is valid for %q, want %q", tt.host, ss.names, tt.names)
		}
		for _, name := range tt.names {
			if err := ss.cert.Leaf.VerifyHostname(name); err != nil {
				t.Errorf("newSelfSigned(%q): %v", tt.host, err)
			}
		}
	}
}

// TestSelfSignedValidity: the certificate is valid from an hour before it
// was made (clocks disagree a little) for a year.
func TestSelfSignedValidity(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	ss, err := newSelfSigned("", now)
	if err != nil {
		t.Fatal(err)
	}
	if nb, na := ss.cert.Leaf.NotBefore, ss.cert.Leaf.NotAfter; !nb.Equal(now.Add(-time.Hour)) || !na.Equal(now.AddDate(1, 0, 0)) {
		t.Fatalf("valid from %v to %v, want from an hour before %v for 365 days", nb, na, now)
	}
}
