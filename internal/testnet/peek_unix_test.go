//go:build unix

package testnet

import (
	"net"
	"testing"
	"time"
)

// await, the other Unixes' WaitPeerClosed and WaitReset, on what Linux's
// kernel reports as theirs do: a FIN, a reset, nothing.
func TestAwaitByPeeking(t *testing.T) {
	s := NewSink(t, "tcp")
	c := dial(t, "tcp", s.Addr())
	if closed, err := await(c, 20*time.Millisecond, false); closed || err != nil {
		t.Fatalf("an open connection: closed %v, %v", closed, err)
	}
	s.Stop()
	if closed, err := await(c, waitLong, false); !closed || err != nil {
		t.Fatalf("after the sink's FIN: closed %v, %v", closed, err)
	}
	if reset, err := await(c, 20*time.Millisecond, true); reset || err != nil {
		t.Fatalf("a FIN is no reset: %v, %v", reset, err)
	}
	c.Write([]byte("into a closed socket\n"))
	if reset, err := await(c, waitLong, true); !reset || err != nil {
		t.Fatalf("after a Write into the closed socket: reset %v, %v", reset, err)
	}
	var nc net.Conn = c
	if _, err := await(struct{ net.Conn }{nc}, time.Millisecond, false); err == nil {
		t.Error("a connection without a socket: no error")
	}
}
