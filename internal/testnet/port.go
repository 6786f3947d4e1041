package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
)

// A helper that stops and starts again on the same port must own a port
// that nobody else is handed meanwhile. A port from the kernel's ephemeral
// range (what binding port 0 gives) can be handed to any socket that
// connects: to the helper's own client redialing it while it is down (a TCP
// client may then connect to itself), or to another test's socket, and the
// helper cannot bind it again. So restartable helpers take a free port
// below that range, which the kernel never hands out by itself.

// stablePortAttempts bounds the search for a free port below the range.
const stablePortAttempts = 100

// ephemeralLow returns the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil && lo > 2048 {
			return lo
		}
	}
	return 32768 // Linux's default; IANA's dynamic range starts higher still
}

// stablePorts yields candidate ports below the ephemeral range, at random
// so that parallel test processes rarely try the same one.
func stablePorts() []int {
	lo := ephemeralLow()
	ports := make([]int, stablePortAttempts)
	for i := range ports {
		ports[i] = lo/2 + rand.IntN(lo/2)
	}
	return ports
}

// listenStableTCP listens on 127.0.0.1 on a free port below the ephemeral
// range.
func listenStableTCP() (net.Listener, error) {
	var err error
	for _, p := range stablePorts() {
		var ln net.Listener
		if ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			return ln, nil
		}
	}
	return nil, fmt.Errorf("no free port below the ephemeral range: %w", err)
}

// listenStableUDP binds 127.0.0.1 on a free port below the ephemeral range.
func listenStableUDP() (*net.UDPConn, error) {
	var err error
	for _, p := range stablePorts() {
		var c *net.UDPConn
		if c, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p}); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no free port below the ephemeral range: %w", err)
}
