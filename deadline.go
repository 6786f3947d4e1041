package conn

import (
	"math"
	"time"
)

// The write deadline lives on the connection, shared by every Write on it,
// while the write timeout is a promise to each Write: it returns within
// the timeout of its own start. Connections serve Writes one at a time in
// turn (every net package connection, net.Pipe and tls.Conn hold a write
// lock), so the deadline may be moved to a Write's start plus the timeout
// once no earlier Write can still be waiting on it:
//
//   - after a Write completes: every Write still waiting is queued behind
//     it and started after it (extendDeadline);
//   - before a Write, while the deadline is ahead, only if the kernel says
//     that no Write can be blocked on the socket: on TCP every byte written
//     has been acknowledged, on other sockets there is room to write;
//   - before a Write, once the deadline has passed: every Write blocked on
//     it was woken then, fails, and retires the connection. One that has
//     just passed is given expiryGrace to do so, since a deadline moved
//     before it notices would hold it again (armDeadline).
//
// A steady stream of Writes on a healthy connection so keeps the deadline
// ahead of it, while a Write blocked on a peer that stopped reading is not
// prolonged by those that arrive after it: it fails on time, and those
// queued behind it fail with it. Both moves are lazy: only when less than
// 7/8 of the timeout is left, about once per eighth of the timeout on a
// busy connection, so a Write costs a clock read and two atomic loads.

// expiryGrace: how long a deadline that has just passed is left for the
// Writes blocked on it to notice, at most an eighth of the timeout. A woken
// goroutine runs within microseconds, unless the machine is overloaded.
const expiryGrace = 20 * time.Millisecond

// armDeadline gives a Write starting at now a fresh deadline if it may.
// Otherwise the Write goes ahead under the current deadline: if it is
// blocked, it fails no later than the earlier Writes it waits behind, and
// with them.
func (m *Manager) armDeadline(l *link, now int64) {
	l.deadlineMu.Lock()
	defer l.deadlineMu.Unlock()
	d := l.deadline.Load()
	switch {
	case d-now >= m.refreshBelow:
		return // another Write did it
	case d == 0:
		// Never set: no Write can be waiting on it.
	case d > now && l.probe.tellsQuiet():
		if !l.probe.quiet() {
			return
		}
	case d > now:
		// Without the kernel's word (no prober, or not Linux) nothing
		// says whether an earlier Write is blocked. Move the deadline
		// once; then only after a Write has completed. A blocked Write is
		// so extended at most once: it fails within twice the timeout of
		// its start, while a Write after a pause never runs under a
		// deadline that is nearly spent.
		if l.blindArm.Load() {
			return
		}
		l.blindArm.Store(true)
	case now-d < int64(m.expiryGrace):
		if !m.awaitExpiry(l, time.Duration(d+int64(m.expiryGrace)-now)) {
			return // a Write blocked on it failed: l is retired
		}
	}
	m.setDeadline(l, now)
}

// awaitExpiry waits up to d for l to be retired by a Write that failed on
// the deadline just passed; it reports whether l lives on.
func (m *Manager) awaitExpiry(l *link, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.dead:
		return false
	case <-t.C:
		return true
	}
}

// extendDeadline moves the deadline to start plus the timeout after a Write
// that started at start has completed: every Write still waiting on the
// connection is behind it.
func (m *Manager) extendDeadline(l *link, start int64) {
	l.deadlineMu.Lock()
	defer l.deadlineMu.Unlock()
	if l.deadline.Load()-start >= m.refreshBelow {
		return
	}
	m.setDeadline(l, start)
}

// setDeadline sets l's write deadline to from plus the write timeout,
// saturating rather than overflowing; l.deadlineMu must be held.
func (m *Manager) setDeadline(l *link, from int64) {
	d := from + int64(m.cfg.writeTimeout)
	if d < from {
		d = math.MaxInt64
	}
	l.conn.SetWriteDeadline(m.epoch.Add(time.Duration(d)))
	l.deadline.Store(d)
}
