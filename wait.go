package conn

import (
	"sync/atomic"
	"time"
)

// awaitFirst waits, within a bound, for the first dial attempt to finish,
// and returns the current link.
func (m *Manager) awaitFirst() *link {
	m.waitBounded(m.firstDial, &m.firstOver)
	return m.live()
}

// awaitReplacement returns the link that replaces the retired l when l
// proved itself and so is redialed at once: it waits, within a bound, for
// that dial. It returns nil when there is none: l did not prove itself, the
// dial failed, or it hangs.
func (m *Manager) awaitReplacement(l *link) *link {
	select {
	case <-l.dead: // retire has finished, here or in another goroutine
	case <-m.closing:
		return nil
	}
	if l.switched.Load() {
		return m.live() // made current before l was switched out
	}
	if !l.redial {
		return nil
	}
	m.waitBounded(l.next, &l.redialSlow)
	return m.live()
}

// waitBounded waits for ready to be closed, for at most m.connectWait, or
// until Close. Once a wait has timed out (recorded in over), later calls do
// not wait: the dial they would wait for is hanging.
func (m *Manager) waitBounded(ready <-chan struct{}, over *atomic.Bool) {
	select {
	case <-ready:
		return
	default:
	}
	if over.Load() {
		return
	}
	t := time.NewTimer(m.connectWait)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
		over.Store(true)
	case <-m.closing:
	}
}

// awaitLive waits until there is a live connection (true), or abort is
// closed or the Manager is closed (false).
func (m *Manager) awaitLive(abort <-chan struct{}) bool {
	if m.live() != nil {
		return true
	}
	for {
		m.mu.Lock()
		if m.live() != nil {
			m.mu.Unlock()
			return true
		}
		if m.changed == nil {
			m.changed = make(chan struct{})
		}
		changed := m.changed
		m.mu.Unlock()
		select {
		case <-changed:
		case <-abort:
			return false
		case <-m.closing:
			return false
		}
	}
}
