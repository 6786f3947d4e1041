package testnet

import (
	"net"
	"strconv"
	"testing"
)

// Restartable helpers take ports the kernel never hands out as ephemeral
// ones, so that nobody can take them while the helper is stopped.
func TestRestartableHelpersAvoidTheEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	for name, addr := range map[string]string{
		"tcp Sink": NewSink(t, "tcp").Addr(),
		"UDPSink":  NewUDPSink(t).Addr(),
	} {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		if p, _ := strconv.Atoi(port); p <= 0 || p >= lo {
			t.Errorf("%s listens on port %d, want one below the ephemeral range (%d)", name, p, lo)
		}
	}
}
