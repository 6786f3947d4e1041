package conn

import (
	"errors"
	"slices"
	"time"
)

// writeOn writes b on l, the link last seen current (nil: none yet), or
// on the link that replaced it: it waits, within bounds, for the first
// dial, or for the redial that replaces a proven link, and moves on from a
// link being switched out. retry allows one write on a successor if the
// write fails.
func (m *Manager) writeOn(l *link, b []byte, retry bool) (int, error) {
	for {
		switch {
		case l == nil:
			l = m.awaitFirst()
		case l.retired.Load():
			l = m.awaitReplacement(l)
		}
		if l == nil {
			if m.isClosed() {
				return 0, ErrClosed
			}
			return 0, m.unavailable()
		}
		var (
			n   int
			err = errLinkLeft
		)
		if !l.counted {
			n, err = m.write(l, b, retry)
		} else if st := l.enter(); st != nil {
			n, err = m.writeEntered(l, st, b, retry)
		}
		if err != errLinkLeft {
			return n, err
		}
		l = m.cur.Load() // made current before l was switched out
	}
}

// writeEntered is write on a link the Write has entered (see link.enter).
func (m *Manager) writeEntered(l *link, st *inflightStripe, b []byte, retry bool) (int, error) {
	defer l.leave(st) // also if the connection panics
	return m.write(l, b, retry)
}

// write is Write on a given link; retry allows one write on its successor.
func (m *Manager) write(l *link, b []byte, retry bool) (int, error) {
	if l.clocked {
		return m.writeClocked(l, b, retry)
	}
	n, err := l.conn.Write(b)
	if err != nil {
		return m.failed(l, b, n, err, retry, false)
	}
	if !l.wrote.Load() {
		l.wrote.Store(true)
	}
	return n, nil
}

// writeClocked is write on a link whose Writes read the clock: to run the
// liveness check or to keep the write deadline ahead of them.
func (m *Manager) writeClocked(l *link, b []byte, retry bool) (int, error) {
	now := m.now()
	var confirm bool
	if l.watched {
		last := l.lastWrite.Load()
		paused := now-last >= int64(idleAfter)
		if paused || now-l.lastCheck.Load() >= int64(recheckAfter) {
			var err error
			if confirm, err = l.checkPeer(paused, last, now); err != nil {
				return m.failed(l, b, 0, err, retry, true)
			}
		}
		if now-last >= int64(idleGrain) {
			l.lastWrite.Store(now)
		}
	}
	if m.cfg.writeTimeout > 0 && l.deadline.Load()-now < m.refreshBelow {
		m.armDeadline(l, now)
	}
	n, err := l.conn.Write(b)
	if err != nil {
		return m.failed(l, b, n, err, retry, false)
	}
	if confirm {
		if err := l.confirmWrite(); err != nil {
			return m.failed(l, b, 0, err, retry, true) // the peer discarded it
		}
	}
	if m.cfg.writeTimeout > 0 {
		if l.deadline.Load()-now < m.refreshBelow {
			m.extendDeadline(l, now)
		}
		if l.blindArm.Load() {
			l.blindArm.Store(false) // a Write completed: none before it is blocked
		}
	}
	if !l.wrote.Load() {
		l.wrote.Store(true)
	}
	return n, nil
}

// failed handles a Write on l that failed with n bytes written, or whose
// liveness check failed (checked). It invalidates l and, when nothing was
// written and l had proven itself, writes b on the connection that replaces
// it.
func (m *Manager) failed(l *link, b []byte, n int, err error, retry, checked bool) (int, error) {
	if errors.Is(err, errMsgSize) {
		return n, err // a datagram too large: the message is at fault, not the connection
	}
	if n == 0 && l.switched.Load() && !isTimeout(err) {
		// Closed by its switch (fence.go), or lost while switched out:
		// nothing was written, and the caller moves to the current link.
		// The switch retires l.
		return 0, errLinkLeft
	}
	m.retire(l, err)
	if n == 0 && retry && !isTimeout(err) {
		if next := m.awaitReplacement(l); next != nil {
			return m.writeOn(next, b, false)
		}
	}
	if m.isClosed() {
		return n, ErrClosed
	}
	if checked {
		if m.cfg.bareErrors {
			return 0, ErrConnectionUnavailable
		}
		<-l.dead // retire, here or elsewhere, has recorded the cause
		return 0, &UnavailableError{l.cause}
	}
	return n, err
}

// retire marks l dead, closes it and records why, unless that was done
// already. The Manager's goroutine then redials.
func (m *Manager) retire(l *link, cause error) { m.retireAs(l, cause, true) }

// retireUnproven is retire for a connection that did not prove itself
// whatever it carried: an acknowledged session on it failed before any
// acknowledgement. The Manager redials after its backoff, so that a peer
// that accepts and then refuses the protocol is not redialed in a loop.
func (m *Manager) retireUnproven(l *link, cause error) { m.retireAs(l, cause, false) }

func (m *Manager) retireAs(l *link, cause error, mayRedial bool) {
	if !l.retired.CompareAndSwap(false, true) {
		return
	}
	l.cause = sane(cause)
	l.redial = mayRedial && cause != ErrClosed && !refused(l.cause) && l.proven(m.now())
	closeConn(l.conn)
	close(l.dead)
}

// interruptWrites makes Writes blocked on the current connection, and on
// those switched out and not yet closed, fail now, by expiring their write
// deadlines; the next Write sets a fresh one. Call the function it returns
// once they have returned: without a write timeout it clears the expired
// deadlines.
func (m *Manager) interruptWrites() (restore func()) {
	var links []*link
	if m.sw != nil {
		m.sw.mu.Lock()
		links = slices.Clone(m.sw.draining)
		m.sw.mu.Unlock()
	}
	if l := m.live(); l != nil {
		links = append(links, l)
	}
	for _, l := range links {
		m.forceDeadline(l, max(m.now(), 1)) // a deadline that has just passed; 0 would mean none
	}
	return func() {
		if m.cfg.writeTimeout == 0 {
			for _, l := range links {
				m.forceDeadline(l, 0)
			}
		}
	}
}

// clearExpiredDeadline clears l's write deadline if it has passed, for a
// switch's fence (Manager.closeWrites). A deadline a Write has just armed
// stays: that Write is bounded by it.
func (m *Manager) clearExpiredDeadline(l *link) {
	defer m.loseOnPanic(l)
	l.deadlineMu.Lock()
	defer l.deadlineMu.Unlock()
	if d := l.deadline.Load(); d != 0 && d <= m.now() {
		l.conn.SetWriteDeadline(time.Time{})
		l.deadline.Store(0)
	}
}

// forceDeadline sets l's write deadline to d (ns since the epoch; 0: none)
// for the BatchWriter's Close. A connection whose SetWriteDeadline panics
// is lost, and Close goes on.
func (m *Manager) forceDeadline(l *link, d int64) {
	defer m.loseOnPanic(l)
	t := time.Time{}
	if d != 0 {
		t = m.epoch.Add(time.Duration(d))
	}
	l.deadlineMu.Lock()
	defer l.deadlineMu.Unlock()
	l.conn.SetWriteDeadline(t)
	l.deadline.Store(d)
}

// writeNow writes b on the live connection, if there is one, without
// waiting for a dial: the BatchWriter waits itself, where its Close can cut
// the wait short. It runs in the BatchWriter's goroutine, so a panic of the
// connection is recovered there: the connection is lost, nothing written.
func (m *Manager) writeNow(b []byte) (int, error) {
	for l := m.live(); l != nil; l = m.live() {
		if n, err := m.writeLink(l, b); err != errLinkLeft {
			return n, err
		}
	}
	if m.isClosed() {
		return 0, ErrClosed
	}
	return 0, m.unavailable()
}

// writeLink writes b on l and on no other connection: a BatchWriter's
// acknowledged session belongs to one. It fails with errLinkLeft, having
// written nothing, if l was lost or has been switched out (counted: from
// the switch; fenced: from the fence), and recovers a panic of the
// connection (which loses it), since it runs in the BatchWriter's
// goroutines.
func (m *Manager) writeLink(l *link, b []byte) (n int, err error) {
	if l.retired.Load() {
		return 0, errLinkLeft
	}
	if l.counted {
		st := l.enter()
		if st == nil {
			return 0, errLinkLeft
		}
		defer l.leave(st)
	}
	defer func() {
		if p := recovered("connection", recover()); p != nil {
			m.retire(l, p)
			n, err = 0, p
		}
	}()
	return m.write(l, b, false)
}
