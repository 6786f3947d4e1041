package testnet

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// rebindTimeout bounds how long Start keeps retrying to bind the remembered
// address (a TCP port can be briefly held by another socket, e.g. a client
// that was handed it as an ephemeral port).
const rebindTimeout = 2 * time.Second

// rebindRetryInterval is the pause between bind attempts. No notification
// exists for "the port became free", so Start polls.
const rebindRetryInterval = 10 * time.Millisecond

// acceptRetryInterval is the back-off after a transient Accept error such as
// EMFILE, so the accept loop does not spin.
const acceptRetryInterval = 5 * time.Millisecond

// SinkOption configures a Sink; pass options to NewSink.
type SinkOption func(*Sink)

// WithIdleTimeout makes the Sink close a connection gracefully (FIN, after
// everything received has been read, so the client reads EOF) once d
// passes without any data arriving on it. The deadline is reset after every
// read. A partial line pending at that moment is recorded as a fragment.
// (Data that arrives in the instant between the deadline and the close is
// unread, and makes the kernel send RST instead.) d <= 0 disables it.
func WithIdleTimeout(d time.Duration) SinkOption {
	return func(s *Sink) { s.idleTimeout = d }
}

// WithTLS makes the Sink serve TLS: every accepted connection is wrapped
// with tls.Server(conn, config) and lines are read from the decrypted
// stream. Accepted counts connections before the handshake; a failed
// handshake just ends that connection. The config must not be modified
// after NewSink.
func WithTLS(config *tls.Config) SinkOption {
	return func(s *Sink) { s.tlsConfig = config }
}

// WithHalfClose makes the Sink half-close every connection as soon as it
// accepts it (shutdown(SHUT_WR): the client sees a FIN) and go on reading
// from it, as a server that never speaks does. Not with WithTLS.
func WithHalfClose() SinkOption {
	return func(s *Sink) { s.halfClose = true }
}

// Sink is a line-counting stream server on 127.0.0.1 ("tcp") or on a unix
// socket path ("unix"). It accepts every connection, reads each one
// concurrently, and records every '\n'-terminated line (without the '\n')
// in arrival order, both overall and per connection. Bytes left without a
// terminating '\n' when a connection ends, for whatever reason, are recorded
// as one torn fragment instead of a line. The Sink never writes to a
// connection (apart from the TLS handshake and close_notify with WithTLS).
//
// The address is fixed at construction and survives Stop/Start, so clients
// can reconnect to the same Addr. Recorded lines, fragments and counters are
// cumulative across restarts.
//
// All methods are safe for concurrent use. Close (also run by tb.Cleanup)
// stops listening, closes every connection and waits for every goroutine
// the Sink started; it is idempotent and bounded.
type Sink struct {
	network     string
	idleTimeout time.Duration
	tlsConfig   *tls.Config
	halfClose   bool

	life   sync.Mutex // serialises Start, Stop and Close
	closed bool       // guarded by life
	wg     sync.WaitGroup

	signal                          // mu guards everything below
	addr      string                // fixed after the first Start
	ln        net.Listener          // nil while stopped
	conns     map[net.Conn]struct{} // raw accepted sockets still being read
	accepted  int
	lines     []string
	byConn    [][]string // indexed by accept order
	fragments []string
}

// NewSink starts a Sink listening on network "tcp" (127.0.0.1, a free port)
// or "unix" (a fresh path from FreeUnixPath) and registers Close with
// tb.Cleanup. It fails the test for any other network or if listening
// fails.
func NewSink(tb testing.TB, network string, opts ...SinkOption) *Sink {
	tb.Helper()
	s := &Sink{network: network, conns: make(map[net.Conn]struct{})}
	for _, opt := range opts {
		opt(s)
	}
	switch network {
	case "tcp":
		// Start picks a port outside the ephemeral range (port.go).
	case "unix":
		s.addr = FreeUnixPath(tb)
	default:
		tb.Fatalf("testnet: NewSink: unsupported network %q (want \"tcp\" or \"unix\")", network)
	}
	if err := s.Start(); err != nil {
		tb.Fatalf("testnet: NewSink: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Addr returns the address clients dial: "127.0.0.1:port" for tcp, the
// socket path for unix. It is the same before and after Stop/Start.
func (s *Sink) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Network returns "tcp" or "unix", for use with net.Dial(s.Network(), s.Addr()).
func (s *Sink) Network() string { return s.network }

// Accepted returns how many connections have been accepted since NewSink,
// across restarts (including any accepted while Stop was closing it).
func (s *Sink) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// OpenConns returns how many accepted connections are still open (not yet
// ended by EOF, error, idle timeout, ResetAll or Stop).
func (s *Sink) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Lines returns a copy of every complete line received so far, without the
// '\n', in the order the Sink read them (per connection, order is the
// client's write order; across connections it is interleaved by arrival).
func (s *Sink) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// LinesByConn returns a copy of the complete lines received on each
// connection, indexed by accept order (element i belongs to the i-th
// accepted connection; it is empty if that connection sent no full line).
func (s *Sink) LinesByConn() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]string, len(s.byConn))
	for i, l := range s.byConn {
		out[i] = append([]string(nil), l...)
	}
	return out
}

// LineCount returns the number of complete lines received so far.
func (s *Sink) LineCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// Fragments returns a copy of the torn fragments: the bytes after the last
// '\n' of each connection that ended with such bytes pending, in the order
// the connections ended.
func (s *Sink) Fragments() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.fragments...)
}

// WaitLines blocks until at least n complete lines have been received or
// timeout elapses, and reports whether n was reached.
func (s *Sink) WaitLines(n int, timeout time.Duration) bool {
	return s.waitUntil(timeout, func() bool { return s.LineCount() >= n })
}

// WaitAccepted blocks until at least n connections have been accepted (in
// total, across restarts) or timeout elapses, and reports whether n was
// reached.
func (s *Sink) WaitAccepted(n int, timeout time.Duration) bool {
	return s.waitUntil(timeout, func() bool { return s.Accepted() >= n })
}

// WaitUntil blocks until cond returns true or timeout elapses, and reports
// whether it did. cond is evaluated at once and again after every change
// the Sink records (an accept, a line, a connection ending); it is called
// without the Sink's locks held, so it may call the Sink's getters, e.g.
// s.WaitUntil(func() bool { return s.OpenConns() == 0 }, 5*time.Second).
func (s *Sink) WaitUntil(cond func() bool, timeout time.Duration) bool {
	return s.waitUntil(timeout, cond)
}

// Start listens again on the Sink's address after Stop. For tcp it binds
// the same port, retrying for up to 2 s while the port is busy; for unix it
// removes a stale socket file first. Start on a running Sink does nothing
// and returns nil; after Close it returns net.ErrClosed.
func (s *Sink) Start() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	s.mu.Lock()
	running := s.ln != nil
	s.mu.Unlock()
	if running {
		return nil
	}
	s.mu.Lock()
	addr := s.addr
	s.mu.Unlock()
	var (
		ln  net.Listener
		err error
	)
	if addr == "" { // the first Start of a tcp Sink
		ln, err = listenStableTCP()
	} else {
		ln, err = listenStream(s.network, addr)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return nil
}

// Stop closes the listener and every open connection (an ordinary close,
// so clients normally see EOF, or a reset if they write afterwards), then
// waits for the Sink's goroutines. New connects are refused until Start.
// The address stays reserved in the Sink and everything recorded so far is
// kept. Stop on a stopped or closed Sink does nothing.
func (s *Sink) Stop() {
	s.life.Lock()
	defer s.life.Unlock()
	s.stopLocked()
}

// StopGracefully stops the way a careful server shuts down: it closes the
// listener, half-closes every connection (a FIN, for tcp and unix) and goes
// on reading until each client closes its side or drain has passed, then
// closes what is left as Stop does. A client that notices the FIN and stops
// writing to that connection loses nothing.
func (s *Sink) StopGracefully(drain time.Duration) {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, c := range conns {
		if hc, ok := c.(interface{ CloseWrite() error }); ok && s.tlsConfig == nil {
			_ = hc.CloseWrite()
		}
	}
	s.waitUntil(drain, func() bool { return s.OpenConns() == 0 })
	s.stopLocked()
}

// RestartGracefully is StopGracefully, a pause of down, then Start.
func (s *Sink) RestartGracefully(drain, down time.Duration) error {
	s.StopGracefully(drain)
	if down > 0 {
		time.Sleep(down) // deliberate downtime, not synchronisation
	}
	return s.Start()
}

// Restart is Stop, a pause of down (the time the server is unreachable),
// then Start.
func (s *Sink) Restart(down time.Duration) error {
	s.Stop()
	if down > 0 {
		time.Sleep(down) // deliberate downtime, not synchronisation
	}
	return s.Start()
}

// ResetAll aborts every open connection so its peer sees a reset: for TCP
// it sets SO_LINGER to 0 and closes, which sends RST (the client's next
// read fails with ECONNRESET, and its next write with ECONNRESET or EPIPE).
// Unix sockets have no reset, so they are just closed. The listener keeps
// accepting. ResetAll returns how many connections it aborted.
func (s *Sink) ResetAll() int {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
	return len(conns)
}

// Close stops the Sink for good: it closes the listener and every
// connection and waits for all of the Sink's goroutines. Recorded data stays
// readable. Close is idempotent; later Start calls return net.ErrClosed.
func (s *Sink) Close() {
	s.life.Lock()
	defer s.life.Unlock()
	s.closed = true
	s.stopLocked()
}

// stopLocked implements Stop; s.life must be held.
func (s *Sink) stopLocked() {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil // tells acceptLoop not to register further connections
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	s.wg.Wait()
}

func (s *Sink) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			current := s.ln == ln
			s.mu.Unlock()
			if errors.Is(err, net.ErrClosed) || !current {
				return
			}
			time.Sleep(acceptRetryInterval) // transient error, e.g. EMFILE
			continue
		}
		s.mu.Lock()
		s.accepted++
		s.notifyLocked()
		if s.ln != ln { // Stop raced with Accept
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		id := len(s.byConn)
		s.byConn = append(s.byConn, nil)
		s.conns[c] = struct{}{}
		s.wg.Add(1) // acceptLoop holds a count, so this cannot race Wait
		s.mu.Unlock()
		go s.serve(c, id)
	}
}

// serve reads lines from one accepted connection until it ends.
func (s *Sink) serve(raw net.Conn, id int) {
	defer s.wg.Done()
	c := raw
	if s.tlsConfig != nil {
		c = tls.Server(raw, s.tlsConfig)
	}
	if hc, ok := raw.(interface{ CloseWrite() error }); ok && s.halfClose {
		_ = hc.CloseWrite()
	}
	buf := make([]byte, 32<<10)
	var pending []byte
	for {
		if s.idleTimeout > 0 {
			_ = c.SetReadDeadline(time.Now().Add(s.idleTimeout))
		}
		n, err := c.Read(buf)
		if n > 0 {
			pending = s.record(id, append(pending, buf[:n]...))
		}
		if err != nil {
			break // EOF, idle deadline, reset, or closed by Stop/ResetAll
		}
	}
	// Close while still registered, so a concurrent Stop can unblock a
	// TLS close_notify write to a peer that is not reading.
	_ = c.Close()
	s.mu.Lock()
	delete(s.conns, raw)
	if len(pending) > 0 {
		s.fragments = append(s.fragments, string(pending))
	}
	s.notifyLocked()
	s.mu.Unlock()
}

// record stores every complete line in data for connection id and returns
// the unterminated remainder (reusing data's storage).
func (s *Sink) record(id int, data []byte) []byte {
	i := bytes.LastIndexByte(data, '\n')
	if i < 0 {
		return data
	}
	complete := data[:i]
	s.mu.Lock()
	for {
		line, rest, found := bytes.Cut(complete, []byte{'\n'})
		l := string(line)
		s.lines = append(s.lines, l)
		s.byConn[id] = append(s.byConn[id], l)
		if !found {
			break
		}
		complete = rest
	}
	s.notifyLocked()
	s.mu.Unlock()
	return append(data[:0], data[i+1:]...)
}

// listenStream listens on network/addr, retrying for rebindTimeout while
// the address is busy. Go sets SO_REUSEADDR on listening sockets itself,
// so a port whose old connections sit in TIME_WAIT can be rebound at once.
func listenStream(network, addr string) (net.Listener, error) {
	if network == "unix" {
		if err := os.Remove(addr); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale unix socket: %w", err)
		}
	}
	var lc net.ListenConfig
	deadline := time.Now().Add(rebindTimeout)
	for {
		ln, err := lc.Listen(context.Background(), network, addr)
		if err == nil {
			return ln, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(rebindRetryInterval)
	}
}
