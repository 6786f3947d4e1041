package testnet

import (
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestHelpersReleaseAllFDs exercises every helper with live connections,
// closes everything, and checks that the descriptor count is back where it
// started. It must not run in parallel with other tests.
func TestHelpersReleaseAllFDs(t *testing.T) {
	exercise := func(t *testing.T) {
		serverConf, clientConf := SelfSignedTLS(t)
		sinks := []*Sink{
			NewSink(t, "tcp"),
			NewSink(t, "unix", WithIdleTimeout(time.Minute)),
			NewSink(t, "tcp", WithTLS(serverConf)),
		}
		var clients []net.Conn
		for i, s := range sinks {
			c := dial(t, s.Network(), s.Addr())
			if i == 2 {
				c = tls.Client(c, clientConf)
			}
			clients = append(clients, c)
			write(t, c, "line\npartial")
			if !s.WaitLines(1, waitLong) {
				t.Fatal("line not received")
			}
		}
		sinks[0].ResetAll()
		if err := sinks[1].Restart(0); err != nil {
			t.Fatal(err)
		}
		never := NewNeverReader(t)
		clients = append(clients, dial(t, "tcp", never.Addr()))
		flapper := NewFlapper(t)
		clients = append(clients, dial(t, "tcp", flapper.Addr()))
		blackhole := NewBlackhole(t)
		udp := NewUDPSink(t)
		uc := dialUDP(t, udp.Addr())
		if _, err := uc.Write([]byte("d")); err != nil {
			t.Fatal(err)
		}
		if !never.WaitAccepted(1, waitLong) || !flapper.WaitAccepted(1, waitLong) || !udp.WaitCount(1, waitLong) {
			t.Fatal("helpers not exercised")
		}
		udp.Stop()
		if err := udp.Start(); err != nil {
			t.Fatal(err)
		}

		for _, c := range clients {
			_ = c.Close()
		}
		_ = uc.Close()
		for _, s := range sinks {
			s.Close()
		}
		never.Close()
		flapper.Close()
		blackhole.Close()
		udp.Close()
	}

	t.Run("warm-up", exercise) // lets the runtime open its netpoll fds
	before := openFDs(t)
	t.Run("measured", exercise)
	if after := openFDs(t); after != before {
		t.Errorf("open fds: %d before, %d after closing every helper", before, after)
	}
}
