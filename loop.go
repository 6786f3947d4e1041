package conn

import (
	"time"

	"github.com/go-kit/log/level"
)

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
				closeConn(l.conn)
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

		if !m.watch(l) {
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

// watch waits until l is lost (true) or the Manager is closed (false).
// Once l has lived its proof age, it notes whether the peer's FIN had come
// by then (see checkPeer).
func (m *Manager) watch(l *link) bool {
	if l.watched {
		// From the dial, not from now: the logger and hook have run since.
		t := time.NewTimer(time.Duration(l.born + l.proofAge - m.now()))
		defer t.Stop()
		select {
		case <-l.dead:
			return true
		case <-m.closing:
			return false
		case <-t.C:
			m.classifyFIN(l)
		}
	}
	select {
	case <-l.dead:
		return true
	case <-m.closing:
		return false
	}
}

// classifyFIN runs l.classifyFIN in the Manager's goroutine. A connection
// whose RawConn panics is lost, not the program.
func (m *Manager) classifyFIN(l *link) {
	defer m.loseOnPanic(l)
	l.classifyFIN()
}

// sleep waits d through the AfterFunc; false means the Manager was closed.
func (m *Manager) sleep(d time.Duration) bool {
	select {
	case <-m.after(d):
		return true
	case <-m.closing:
		return false
	}
}

// after calls the AfterFunc. One that panics is replaced by time.After.
func (m *Manager) after(d time.Duration) (ch <-chan time.Time) {
	if m.afterOff {
		return time.After(d)
	}
	defer func() {
		if p := recovered("AfterFunc", recover()); p != nil {
			m.afterOff = true
			m.log(level.ErrorValue(), "AfterFunc panicked; using time.After from now on", "err", p, "stack", string(p.(*panicError).stack))
			ch = time.After(d)
		}
	}()
	return m.cfg.after(d)
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

// enter records a change of state and queues it for the logger, as msg,
// and for the hook.
func (m *Manager) enter(msg string, ev Event) {
	m.mu.Lock()
	if ev.State == Disconnected && m.stats.State == Connected {
		m.stats.Lost++
	}
	m.stats.State = ev.State
	m.stats.Since = time.Now()
	if ev.Err != nil {
		m.stats.LastError = ev.Err
		if !m.cfg.bareErrors {
			m.unavail.Store(&UnavailableError{ev.Err})
		}
	}
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
	m.mu.Unlock()

	if m.listened() {
		m.announce(msg, ev)
	}
}

// announce queues a change of state for the logger and the hook. Apart
// from enter, so that ev moves to the heap only when someone listens.
func (m *Manager) announce(msg string, ev Event) {
	kv := []any{level.Key(), level.InfoValue(), "msg", msg, "network", m.network, "address", m.address}
	if ev.State == Disconnected {
		kv[1] = level.WarnValue()
		if IsPermanent(ev.Err) {
			kv[1] = level.ErrorValue()
		}
		kv = append(kv, "err", ev.Err, "attempt", ev.Attempt, "retry_in", ev.Wait.String())
	}
	m.notify(note{kv: kv, ev: &ev}, true)
}

// callHook passes ev to the state hook. A hook that panics is logged and
// disabled.
func (m *Manager) callHook(ev Event) {
	if m.cfg.hook == nil || m.hookOff {
		return
	}
	defer func() {
		if p := recovered("state hook", recover()); p != nil {
			m.hookOff = true
			// On the delivering goroutine: log in place, in order.
			m.logLine([]any{level.Key(), level.ErrorValue(), "msg", "state hook panicked; it is called no more", "err", p, "stack", string(p.(*panicError).stack)})
		}
	}()
	m.cfg.hook(ev)
}
