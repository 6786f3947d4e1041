package main

import (
	"crypto/tls"
	"testing"
)

// TestTicketSignal: the session cache of send's TLS dialer keeps nothing,
// and says when a session ticket arrives (the server's acceptance of the
// client certificate), once per ticket, never blocking; crypto/tls's
// removal of an entry (a nil session) is no ticket.
func TestTicketSignal(t *testing.T) {
	t.Parallel()
	ch := make(chan struct{}, 1)
	cache := ticketSignal(ch)
	cache.Put("k", nil)
	select {
	case <-ch:
		t.Fatal("a nil session (an entry removed) was taken for a ticket")
	default:
	}
	cache.Put("k", new(tls.ClientSessionState))
	cache.Put("k", new(tls.ClientSessionState)) // the channel is full: no wait
	select {
	case <-ch:
	default:
		t.Fatal("a session ticket was not signalled")
	}
	if cs, ok := cache.Get("k"); cs != nil || ok {
		t.Errorf("Get = %v, %v: the cache keeps a session, which would be resumed", cs, ok)
	}
}
