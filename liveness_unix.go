//go:build unix

package conn

import (
	"net"
	"sync"
	"syscall"
	"time"
)

// How the liveness check asks the kernel about a socket.
type probeKind uint8

const (
	// probeNative is the best the platform has: on Linux, ppoll with
	// POLLRDHUP; on the other Unixes, the peek.
	probeNative probeKind = iota
	// probePeek is the portable check, which every Unix has: recv with
	// MSG_PEEK|MSG_DONTWAIT, and SO_ERROR at its end of file. It runs on
	// Linux too when a test asks for it, so that the path other Unixes
	// take is tested here.
	probePeek
)

// resetPoll: how often the peek checks, while it waits for the reset a
// closed peer answers data with, whether the reset has come. Nothing wakes
// a waiter when it does: after a FIN the socket is always readable.
const resetPoll = time.Millisecond

// A prober asks the kernel about a socket without reading or writing it:
// whether a Write could be blocked on it; and, for a stream socket, whether
// the peer has closed or reset it, and whether it reset after a Write. It
// goes through RawConn.Control, which holds neither the read nor the write
// lock, so it neither waits for nor steals from a goroutine using the
// connection.
//
// The answers are left in fields and the system calls are bound methods
// stored once, so that a check allocates nothing (but the peek's on a Linux
// unix socket with unread data, where recvfrom returns the peer's address:
// the peek is Linux's in tests only); mu serialises them.
//
// What the peek cannot tell, which ppoll with POLLRDHUP can (Linux):
//   - a FIN or a reset behind data nobody has read: the peek sees the
//     data, and the connection looks alive. A TLS 1.3 connection that only
//     writes has its session tickets unread, so the peek never sees its
//     peer's close (after a reset the next Write fails itself);
//   - a half-close from a close on a unix socket: both look like a FIN,
//     which is treated as it is on TCP (see checkPeer); on a unixpacket
//     socket an empty record reads like either, so there the peek sees
//     errors only (a Write to a closed unix peer fails itself);
//   - whether a Write could be blocked on the socket (quiet): the write
//     deadline then follows the rules for connections without a prober;
//   - the round trip, which bounds the wait for a reset (awaitReset): the
//     time the dial took stands for it.
type prober struct {
	rc     syscall.RawConn
	stream bool // a stream socket: the liveness check applies
	tcp    bool // TCP: a closed peer answers data with a reset, after a round trip
	packet bool // SOCK_SEQPACKET: an empty record reads as an end of file
	peek   bool // the portable check (probePeek)

	mu                 sync.Mutex
	peer, queue, reset func(fd uintptr) // bound methods; queue is nil when the kernel cannot be asked
	fin                bool             // peer's answer: the peer's FIN has arrived
	errno              syscall.Errno    // peer's and reset's answer: the socket failed
	failed             syscall.Errno    // the peek's first error, kept: the kernel reports one once
	roomy              bool             // queue's answer
	wait               time.Duration    // how long the native reset may wait
	buf                [1]byte          // what the peek copies, and nobody reads
	native             nativeProbe      // what the platform's own check needs
}

// newProber returns a prober of the given kind for c's socket, looking
// through TLS (anything with a NetConn method), or nil if c has none (or
// its methods panic).
func newProber(c net.Conn, kind probeKind) (p *prober) {
	defer func() {
		if recover() != nil {
			p = nil
		}
	}()
	for range 4 { // TLS over TCP is one level; a cycle must not loop
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok || isNil(sc) {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var (
		typ     int
		local   syscall.Sockaddr
		sockErr error
	)
	if err := rc.Control(func(fd uintptr) {
		if typ, sockErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE); sockErr == nil {
			local, _ = syscall.Getsockname(int(fd))
		}
	}); err != nil || sockErr != nil {
		return nil
	}
	stream := typ == syscall.SOCK_STREAM || typ == syscall.SOCK_SEQPACKET
	// TCP or unix from the kernel, not from the connection's address,
	// which a wrapper may make up. A stream socket not known to be a unix
	// one is taken for TCP, the safe side: its FIN is never taken for a
	// half-close without a confirmed Write.
	_, unix := local.(*syscall.SockaddrUnix)
	p = &prober{rc: rc, stream: stream, tcp: stream && !unix, packet: typ == syscall.SOCK_SEQPACKET}
	if kind == probePeek || !p.useNative() {
		p.peek = true
		p.peer, p.reset = p.peekFd, p.peekResetFd
	}
	return p
}

// check reports whether the peer has closed or reset the connection. err is
// set when the connection is unusable: reset, failed, closed by us, or (on
// Linux) a unix socket closed by the peer. fin alone means the peer's FIN
// has arrived, which may be a close or a half-close: on TCP always; on a
// unix socket only with the peek, since Linux tells a unix socket's
// half-close (reported alive) from its close itself.
func (p *prober) check() (fin bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fin, p.errno = false, 0
	if err := p.rc.Control(p.peer); err != nil {
		return false, err
	}
	if p.errno != 0 {
		return false, p.errno
	}
	return p.fin, nil
}

// peekFd is the portable check: recv's end of file is the peer's FIN, or a
// reset after it (Linux reports the FIN first: SO_ERROR tells); an error is
// a reset or a failure. One system call while the connection is alive. An
// error is kept: reading it cleared it in the kernel, and the connection
// is dead. On a SOCK_SEQPACKET socket an empty record reads as an end of
// file too: there only an error counts (a Write to a closed unix peer
// fails itself).
func (p *prober) peekFd(fd uintptr) {
	if p.failed != 0 {
		p.errno = p.failed
		return
	}
	n, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|msgDontWait)
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR:
		// Nothing to read: alive.
	case err != nil:
		p.errno = errnoOf(err)
	case n == 0:
		p.fin = !p.pendingError(fd) && !p.packet
	}
	// n > 0: data nobody has read, which hides a FIN or a reset behind it.
	p.failed = p.errno
}

// pendingError records the socket's pending error (SO_ERROR, which a reset
// sets) and reports whether there was one. Reading it clears it: the next
// Write on the socket fails instead (EPIPE).
func (p *prober) pendingError(fd uintptr) bool {
	soerr, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
	switch {
	case err != nil:
		p.errno = errnoOf(err)
	case soerr != 0:
		p.errno = syscall.Errno(soerr)
	}
	return p.errno != 0
}

// errnoOf is err as the system's error number, EIO if it is none (package
// syscall returns Errno values, but says so nowhere).
func errnoOf(err error) syscall.Errno {
	if errno, ok := err.(syscall.Errno); ok && errno != 0 {
		return errno
	}
	return syscall.EIO
}

// tellsQuiet reports whether quiet can answer: whether p asks the kernel
// how much of what was written the peer has not taken (Linux's ppoll only).
// p may be nil.
func (p *prober) tellsQuiet() bool { return p != nil && p.queue != nil }

// quiet reports whether no Write can be blocked on the socket now: on TCP,
// every byte written has been acknowledged (a blocked Write needs a full
// send buffer); on other sockets, the kernel reports room to write (for a
// unix stream socket, at most a quarter of its buffer is in use: a Write
// blocked on a full buffer is woken only then). Only when tellsQuiet.
func (p *prober) quiet() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.roomy = false
	if err := p.rc.Control(p.queue); err != nil {
		return false
	}
	return p.roomy
}

// awaitReset waits up to floor plus two round trips (at most ceiling) for
// the peer to reset the connection after a Write, and returns why it did,
// or nil if it did not: then the peer's kernel accepted the data on an
// open socket. dial, how long the connection's dial took, stands for the
// round trip where the kernel does not tell it. A unix socket needs no
// wait: a Write to a closed peer fails itself.
func (p *prober) awaitReset(floor, ceiling, dial time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	rtt := dial
	if !p.peek {
		rtt = p.roundTrip(dial)
	}
	deadline := time.Now().Add(resetWait(floor, ceiling, rtt))
	for {
		// The native reset blocks in ppoll up to p.wait; the peek's looks
		// once, and this loop sleeps between looks, outside Control (which
		// holds up the connection's Close).
		p.errno, p.wait = 0, time.Until(deadline)
		if err := p.rc.Control(p.reset); err != nil {
			return err
		}
		if p.errno != 0 {
			return p.errno
		}
		left := time.Until(deadline)
		if left <= 0 || !p.tcp {
			return nil
		}
		time.Sleep(min(left, resetPoll))
	}
}

// peekResetFd looks for the reset with the peek's means: a pending error,
// kept as peekFd keeps one.
func (p *prober) peekResetFd(fd uintptr) {
	if p.failed == 0 {
		p.pendingError(fd)
		p.failed = p.errno
	}
	p.errno = p.failed
}

// resetWait is how long to wait for a reset: floor plus two round trips,
// at most ceiling.
func resetWait(floor, ceiling, rtt time.Duration) time.Duration {
	return min(floor+2*rtt, ceiling)
}
