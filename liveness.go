package conn

import (
	"errors"
	"time"
)

// errPeerHalfClosed is the cause recorded when a connection is left because
// its peer half-closed it early and may be draining it (see confirmWrite).
var errPeerHalfClosed = errors.New("conn: peer half-closed the connection")

const (
	// idleAfter: a Write that follows the previous one on its connection by
	// at least this much first checks whether the peer has closed the
	// connection. The check is one ppoll: ~240 ns back to back
	// (BenchmarkLivenessCheck), but 2-5 µs after a pause, when caches are
	// cold (bench/ WriteTCPIdle). After a pause of a millisecond that is
	// under 0.5% of the pause. Every first Write on a new connection is
	// checked too.
	idleAfter = time.Millisecond
	// recheckAfter: a busy connection is checked this often too, so that a
	// peer that closes while Writes follow each other closely — a server
	// shutting down gracefully, which stops reading only when the client
	// has gone — is noticed within this time: a few µs per 10 ms.
	recheckAfter = 10 * time.Millisecond
	// idleGrain: how stale a connection's last-write time may be. Writes
	// store it only when it is this much out of date, so that parallel
	// writers do not all write one cache line.
	idleGrain = idleAfter / 4
	// resetWaitFloor and maxResetWait bound how long a Write on a
	// connection whose peer sent its FIN early waits, after writing, for
	// the reset a closed peer answers data with: two round trips plus the
	// floor, which covers a busy machine's softirq latency, never more than
	// the maximum. A half-closing peer costs this once per connection.
	resetWaitFloor = 5 * time.Millisecond
	maxResetWait   = time.Second
	// keepHalfClosed: how long after its dial a connection kept as a
	// half-closer's (see confirmWrite) is written on at most; it is then
	// left at a check and redialed, and the next one is kept again. A
	// server that stops gracefully just after two dials in a row looks
	// like a half-closer; this bounds its loss to drains shorter than
	// this. A half-closer costs a redial and a reset wait a second.
	keepHalfClosed = time.Second
)

// What a peer whose FIN came early did with a Write after it
// (link.halfClose; 0 until a Write is confirmed). See confirmWrite.
const (
	tookData   = 1 + iota // it took the data, but may be draining: leave the connection
	halfCloser            // it took data after an early FIN on the previous connection too: keep it
)

// checkPeer is the liveness check of a Write at now on l, whose previous
// Write was at last (coarsely): after a pause (paused), or on a busy
// connection every recheckAfter. It returns why l must not be written on, or whether
// the Write must be confirmed once written (see confirmWrite).
//
// A FIN alone is read as a close when it arrives on an established
// connection, the usual way a server drops an idle client; and as a
// possible half-close when it arrived within the connection's proof age of
// its dial (a server that half-closes every connection at once, one that
// accepts and drops, or one that stops gracefully just after the dial):
// then the next Write goes out and waits for the verdict of the peer's
// kernel (confirmWrite), and the connection is left at the next check
// unless the peer did the same on the previous connection. On a unix
// socket the kernel tells a close from a half-close itself (see
// prober.check).
func (l *link) checkPeer(paused bool, last, now int64) (confirm bool, err error) {
	var fin bool
	if paused {
		fin, err = l.checkAfterPause(last, now)
	} else {
		fin, err = l.recheck(now)
	}
	switch hc := l.halfClose.Load(); {
	case err != nil:
		l.closedAfterHolding()
		return false, err
	case !fin || hc == halfCloser && now-l.born < int64(keepHalfClosed):
		return false, nil
	case hc != 0:
		// The peer took data after an early FIN, but may be draining
		// before it closes: leave, losing nothing (see confirmWrite).
		return false, errPeerHalfClosed
	case l.earlyFIN.Load() || !l.classified.Load():
		// Early, or not yet classified: classification happens once the
		// connection has lived its proof age, or later if the Manager's
		// goroutine runs late. The Write confirms.
		return true, nil
	}
	l.closedAfterHolding()
	return false, errPeerClosed
}

// closedAfterHolding notes that a check found l closed, or reset, by a peer
// that had held it open for its proof age: the peer works, and dropped a
// connection it found idle. See proven.
func (l *link) closedAfterHolding() {
	if l.heldOpen.Load() {
		l.idleClosed.Store(true)
	}
}

// checkAfterPause returns the verdict of a check that began after the
// pause that ended at the caller's Write: the pause began at most idleGrain
// after since, the coarse time of the last Write. Writers that arrive
// together after a pause wait for the one check the first of them runs,
// rather than write past it.
func (l *link) checkAfterPause(since, now int64) (fin bool, err error) {
	l.checkMu.Lock()
	defer l.checkMu.Unlock()
	if l.checkedAt >= since+int64(idleAfter) {
		return l.checkFIN, l.checkErr
	}
	return l.checkLocked(now)
}

// recheck is the periodic check of a busy connection. A Write that finds a
// check under way does not wait for it: it follows another Write closely,
// and what a FIN racing it costs is documented.
func (l *link) recheck(now int64) (fin bool, err error) {
	if !l.checkMu.TryLock() {
		return false, nil
	}
	defer l.checkMu.Unlock()
	return l.checkLocked(now)
}

func (l *link) checkLocked(now int64) (fin bool, err error) {
	l.checks.Add(1)
	l.lastCheck.Store(now)
	fin, err = l.probe.check()
	l.checkedAt, l.checkFIN, l.checkErr = now, fin, err
	return fin, err
}

// confirmWrite follows a Write on a connection whose peer's FIN came early.
// A peer that closed its socket answers the data with a reset: the data
// was discarded, and the error returned says so. A peer whose socket is
// open took it; it may be one of two kinds, which nothing on this
// connection tells apart:
//
//   - a server that half-closes every connection at once and reads for as
//     long as the client writes (it never speaks);
//   - a server that stops gracefully (FIN, then reading for a drain, then
//     closing) and happened to stop just after the dial. Writing on through
//     its FIN loses what is written once its drain is over.
//
// The kernel cannot tell them apart (both are open half-closed sockets
// that read), but the next connection can: the first kind half-closes it
// early too, the second has stopped listening, or its successor does not.
// So the connection is left at the next check (checkPeer): the second
// kind reads what was written until our FIN, and the Manager redials at
// once (the connection is proven: see link.proven). Only when the peer
// also took data after an early FIN on the previous connection, to the
// same endpoint, is the connection kept, its FIN no sign of death (only a
// reset or an error is) until keepHalfClosed after its dial. A
// half-closing server costs one more connection each time a connection
// without an early FIN comes between, and a redial a second; a graceful
// stop that races a dial loses nothing, and one that races two dials in a
// row nothing if its drain lasts keepHalfClosed.
func (l *link) confirmWrite() error {
	l.checkMu.Lock()
	defer l.checkMu.Unlock()
	if l.halfClose.Load() != 0 {
		return nil // another Write's confirmation found none
	}
	if l.retired.Load() {
		return errPeerClosed // another Write's confirmation found the reset
	}
	if err := l.probe.awaitReset(resetWaitFloor, l.resetCap, time.Duration(l.dialTime)); err != nil {
		return err
	}
	if l.halfClosedBefore != "" && l.halfClosedBefore == l.endpoint {
		l.halfClose.Store(halfCloser)
	} else {
		l.halfClose.Store(tookData)
	}
	return nil
}

// classifyFIN runs once the connection has lived its proof age, from the
// Manager's goroutine: a FIN that has arrived by then came early, whenever
// a Write first sees it; a connection with neither a FIN nor an error then
// was held open by its peer.
func (l *link) classifyFIN() {
	l.checkMu.Lock()
	defer l.checkMu.Unlock()
	defer l.classified.Store(true)
	fin, err := l.probe.check()
	l.earlyFIN.Store(fin && err == nil)
	l.heldOpen.Store(!fin && err == nil)
}
