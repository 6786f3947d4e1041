package conn

import "time"

// run is the Manager's goroutine: it dials, waits for the connection to be
// lost, and dials again after the backoff, until Close. It is the only
// goroutine that makes links current, logs and calls the state hook.
func (m *Manager) run() {
	defer close(m.done)
	defer m.enter("closed", Event{State: Closed})
	var (
		attempt int   // consecutive failures
		lost    *link // the link whose loss this dial answers
	)
	for {
		l, err := m.dial()
		if m.isClosed() {
			if l != nil {
				l.conn.Close()
			}
			return
		}
		if l != nil {
			m.cur.Store(l)
		}
		// Record the attempt before releasing those who wait for it, so
		// that what they see in Stats is up to date.
		m.count(err)
		var wait time.Duration
		if err != nil {
			attempt++
			wait = m.cfg.backoff.next(attempt)
			m.enter("dial failed", Event{State: Disconnected, Err: err, Attempt: attempt, Wait: wait})
		} else {
			m.enter("connected", Event{State: Connected, Attempt: attempt})
		}
		if lost == nil {
			select {
			case <-m.firstDial:
			default:
				close(m.firstDial)
			}
		} else {
			close(lost.next)
			lost = nil
		}
		if err != nil {
			if !m.sleep(wait) {
				return
			}
			continue
		}

		select {
		case <-l.dead:
		case <-m.closing:
			m.retire(l, ErrClosed)
			return
		}
		lost = l
		wait = 0
		if l.redial {
			attempt = 0
		} else {
			attempt++
			wait = m.cfg.backoff.next(attempt)
		}
		m.enter("connection lost", Event{State: Disconnected, Err: l.cause, Attempt: attempt, Wait: wait})
		if wait > 0 && !m.sleep(wait) {
			return
		}
	}
}

// sleep waits d through the AfterFunc; false means the Manager was closed.
func (m *Manager) sleep(d time.Duration) bool {
	select {
	case <-m.cfg.after(d):
		return true
	case <-m.closing:
		return false
	}
}

// count records a finished dial attempt.
func (m *Manager) count(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.Dials++
	if err != nil {
		m.stats.DialFailures++
	}
}

// enter records a change of state, logs it as msg and passes it to the
// hook.
func (m *Manager) enter(msg string, ev Event) {
	m.mu.Lock()
	if ev.State == Disconnected && m.stats.State == Connected {
		m.stats.Lost++
	}
	m.stats.State = ev.State
	m.stats.Since = time.Now()
	if ev.Err != nil {
		m.stats.LastError = ev.Err
	}
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
	m.mu.Unlock()
	ev.Queue = m.queueStats()

	kv := []any{"level", "info", "msg", msg, "network", m.network, "address", m.address}
	if ev.State == Disconnected {
		kv[1] = "warn"
		kv = append(kv, "err", ev.Err, "attempt", ev.Attempt, "retry_in", ev.Wait.String())
	}
	m.cfg.logger.Log(kv...)
	if m.cfg.hook != nil {
		m.cfg.hook(ev)
	}
}
