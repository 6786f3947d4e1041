// Package testnet provides fault-injection helpers built on real loopback
// sockets (127.0.0.1 and unix sockets in short temp directories) for tests
// of connection-managing code.
//
// Every helper is created by a constructor that takes a testing.TB, fails
// the test if the socket cannot be set up, and registers its Close with
// tb.Cleanup. Every Close is idempotent, returns promptly, stops every
// goroutine the helper started and closes every socket it opened. All
// methods are safe for concurrent use. Wait methods block on a change
// notification (never on polling sleeps) and are bounded by their timeout.
//
// Stream servers:
//
//	NewSink(tb, network string, opts ...SinkOption) *Sink
//	    line-counting server on "tcp" (127.0.0.1, a port below the
//	    ephemeral range, kept across restarts) or "unix".
//	    Options: WithIdleTimeout(d time.Duration), WithTLS(*tls.Config),
//	    WithHalfClose() (FIN at accept, then keeps reading).
//	    Addr() string, Network() string
//	    Accepted() int, OpenConns() int
//	    Lines() []string, LinesByConn() [][]string, LineCount() int,
//	    Fragments() []string
//	    WaitLines(n int, timeout time.Duration) bool
//	    WaitAccepted(n int, timeout time.Duration) bool
//	    WaitUntil(cond func() bool, timeout time.Duration) bool
//	    Stop(), Start() error, Restart(down time.Duration) error,
//	    StopGracefully(drain), RestartGracefully(drain, down time.Duration) error
//	    ResetAll() int, Close()
//
//	NewNeverReader(tb) *NeverReader   accepts, never reads, tiny window and MSS
//	NewFlapper(tb) *Flapper           accepts and closes at once
//	    both: Addr() string, Accepted() int, WaitAccepted(n, timeout) bool, Close()
//
//	NewBlackhole(tb) *Blackhole       connects hang until timed out (linux)
//	    Addr() string, Close()
//
// Datagrams:
//
//	NewUDPSink(tb) *UDPSink
//	    Addr() string, Datagrams() []string, Count() int,
//	    WaitCount(n int, timeout time.Duration) bool,
//	    Stop(), Start() error, Close()
//
// Watching a client socket (Unix; a FIN behind unread data is seen on Linux only):
//
//	WaitPeerClosed(c net.Conn, timeout) (bool, error)
//	    blocks until c's peer closed or half-closed it (FIN), reset it,
//	    or timeout; reads nothing
//	WaitReset(c net.Conn, timeout) error
//	    blocks until c was reset (after a FIN too) or failed; an error
//	    after timeout. On Linux a ppoll; elsewhere it polls every
//	    millisecond, which the other wait methods never do
//
// TLS and paths:
//
//	SelfSignedTLS(tb) (server, client *tls.Config)
//	FreeUnixPath(tb) string
//
// Kernel notes (Linux): a TCP listener whose accept queue is full drops
// incoming SYNs silently (no RST, independent of tcp_syncookies), which is
// what Blackhole relies on; see blackhole_linux.go. A UDP socket connected
// to a port nobody is bound to receives ICMP port-unreachable, which the
// kernel reports as ECONNREFUSED on the next send or receive. A client's
// kernel send buffer is autotuned from MSS × congestion window, so on
// loopback (MSS ~64 KiB) it can absorb megabytes before a write blocks;
// NeverReader clamps the MSS to keep that to ~100-200 KB. While a unix
// Sink is stopped its socket file is gone, so dials fail with ENOENT
// rather than ECONNREFUSED.
package testnet
