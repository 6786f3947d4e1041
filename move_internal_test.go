package conn

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

// remoteOnly is a connection that only tells where it sends.
type remoteOnly struct {
	net.Conn
	remote string
}

func (c remoteOnly) RemoteAddr() net.Addr {
	return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(c.remote))
}

// A datagram link moves when its endpoint's name no longer resolves to the
// address it sends to; an endpoint given as an address never looks up, nor
// moves.
func TestDatagramLinkMovesWhenItsNameResolvesElsewhere(t *testing.T) {
	m := New("udp", "logs.example:514", WithEndpoints("10.0.0.9:514"),
		WithDialer(func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no dialing here") }))
	defer m.Close()
	var resolved []netip.Addr
	lookups := 0
	m.sw.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		lookups++
		return resolved, nil
	}
	for _, c := range []struct {
		endpoint, remote string
		resolved         []netip.Addr
		moved            bool
		lookups          int
	}{
		{"logs.example:514", "10.0.0.1:514", []netip.Addr{netip.MustParseAddr("10.0.0.1")}, false, 1},
		{"logs.example:514", "10.0.0.1:514", []netip.Addr{netip.MustParseAddr("10.0.0.2")}, true, 1},
		{"10.0.0.9:514", "10.0.0.1:514", []netip.Addr{netip.MustParseAddr("10.0.0.2")}, false, 0},
	} {
		resolved, lookups = c.resolved, 0
		l := &link{endpoint: c.endpoint, conn: remoteOnly{remote: c.remote}, dead: make(chan struct{})}
		if got := m.moved(l); got != c.moved || lookups != c.lookups {
			t.Errorf("%s sending to %s, resolving to %v: moved %v after %d lookups, want %v after %d", c.endpoint, c.remote, c.resolved, got, lookups, c.moved, c.lookups)
		}
	}
}
