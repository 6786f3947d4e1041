package conn

import (
	"slices"
	"strings"
	"time"

	"github.com/go-kit/log/level"
)

// run is the Manager's goroutine: it dials, waits for the connection to be
// lost, and dials again after the backoff, until Close. With several
// endpoints or a maximum age it also replaces working connections
// (switch.go). It is the only goroutine that makes links current, logs and
// calls the state hook.
//
// Its work is done in functions it calls, so that its own frame stays
// small: the goroutine keeps, while it waits, the stack its deepest dial
// needed unless what it uses while waiting is under a quarter of it, and
// then the garbage collector shrinks it (4 KiB instead of 8 per Manager).
func (m *Manager) run() {
	defer m.exit()
	var st redials
	for {
		l, wait, closed := m.redial(&st)
		if closed {
			return
		}
		if l == nil {
			if !m.sleep(wait) {
				return
			}
			continue
		}
		if l = m.serve(l); l == nil {
			return
		}
		if wait = m.lose(&st, l); wait > 0 && !m.sleep(wait) {
			return
		}
	}
}

// redials is what run knows of the failures so far.
type redials struct {
	attempt int   // consecutive failures
	rounds  int   // consecutive failures followed by a backoff wait
	lost    *link // the link whose loss the next dial answers
	// The endpoints whose connections were lost before they proved
	// themselves, since the last backoff: tried after the others, and
	// without a backoff wait while there are others.
	shunned []string
}

// redial makes a round of dials and records it: it returns the new link,
// or nil and the backoff wait before the next round, or closed.
//
//go:noinline
func (m *Manager) redial(st *redials) (l *link, wait time.Duration, closed bool) {
	m.refresh(nil)
	order := last(m.order(), st.shunned)
	l, err := m.dialRound(order, nil)
	if m.isClosed() {
		if l != nil {
			closeConn(l.conn)
		}
		return nil, 0, true
	}
	if l != nil {
		m.cur.Store(l)
	}
	// Record the attempt before releasing those who wait for it, so
	// that what they see in Stats is up to date.
	m.count(err)
	if err != nil {
		st.attempt, st.rounds, st.shunned = st.attempt+1, st.rounds+1, nil
		wait = m.cfg.backoff.next(st.rounds)
		m.enter("dial failed", Event{State: Disconnected, Err: err, Attempt: st.attempt, Wait: wait, Endpoint: sole(order)})
	} else {
		m.enter("connected", Event{State: Connected, Attempt: st.attempt, Endpoint: l.endpoint})
	}
	if st.lost == nil {
		select {
		case <-m.firstDial:
		default:
			close(m.firstDial)
		}
	} else {
		close(st.lost.next)
		st.lost = nil
	}
	return l, wait, false
}

// lose records the loss of l and returns the wait before the next round.
//
//go:noinline
func (m *Manager) lose(st *redials, l *link) (wait time.Duration) {
	st.lost = l
	if l.via == Failback && m.sw != nil {
		// A fail-back to an endpoint that drops connections before
		// they prove themselves would be repeated at every probe:
		// probe it less often each time, until one proves itself.
		if l.redial {
			m.sw.probeBackoff = 0
		} else {
			m.sw.probeBackoff = min(m.sw.probeBackoff+1, maxProbeBackoff)
		}
	}
	if l.redial {
		st.attempt, st.rounds, st.shunned = 0, 0, nil
	} else {
		st.attempt++
		if !slices.Contains(st.shunned, l.endpoint) {
			st.shunned = append(st.shunned, l.endpoint)
		}
		if m.untried(st.shunned) == 0 {
			st.rounds++
			wait = m.cfg.backoff.next(st.rounds)
			st.shunned = st.shunned[len(st.shunned)-1:] // the latest stays last
		}
	}
	m.enter("connection lost", Event{State: Disconnected, Err: l.cause, Attempt: st.attempt, Wait: wait, Endpoint: l.endpoint})
	return wait
}

// exit ends run: the last change of state, the links being switched out
// closed, and done.
func (m *Manager) exit() {
	m.enter("closed", Event{State: Closed})
	if m.sw != nil {
		m.abortDrains()
		m.sw.drainers.Wait()
	}
	close(m.done)
}

// last returns order with the endpoints of shunned moved to the end, in
// the order of shunned: an endpoint that accepted a connection and lost it
// before it proved itself (a broken service behind a port that accepts) is
// tried after the others, so that it does not keep the Manager from a
// working standby.
func last(order, shunned []string) []string {
	if len(shunned) == 0 || len(order) < 2 {
		return order
	}
	out := make([]string, 0, len(order))
	for _, e := range order {
		if !slices.Contains(shunned, e) {
			out = append(out, e)
		}
	}
	for _, e := range shunned {
		if slices.Contains(order, e) {
			out = append(out, e)
		}
	}
	return out
}

// untried returns how many endpoints are not in shunned.
func (m *Manager) untried(shunned []string) int {
	if m.sw == nil {
		return 0
	}
	n := 0
	for _, e := range m.sw.list {
		if !slices.Contains(shunned, e) {
			n++
		}
	}
	return n
}

// What ends a watch.
type watchEnd int

const (
	watchLost    watchEnd = iota // the link was retired
	watchClosed                  // the Manager was closed
	watchAged                    // the maximum age passed: rotate, or resolve a datagram endpoint
	watchProbing                 // time to probe the endpoints above (Priority)
)

// serve keeps l, the current link, until it is lost, replacing it by
// another when a switch is due. It returns the link lost, or nil when the
// Manager was closed.
func (m *Manager) serve(l *link) *link {
	var ageAt, probeAt int64 // when the next rotation and probe are due; 0: never
	schedule := func(aged, probed bool) {
		now := m.now()
		if m.sw == nil {
			return
		}
		if m.sw.maxAge > 0 && aged {
			ageAt = later(now, spread10(m.sw.maxAge))
		}
		if m.probes() && probed {
			probeAt = later(now, spread10(m.sw.probeEvery()))
		}
	}
	schedule(true, true)
	for {
		why := m.watch(l, ageAt, probeAt)
		switch why {
		case watchLost:
			return l
		case watchClosed:
			m.retire(l, ErrClosed)
			return nil
		}
		nl, sw := m.replacement(l, why)
		if m.isClosed() {
			if nl != nil {
				closeConn(nl.conn)
			}
			m.retire(l, ErrClosed)
			return nil
		}
		if nl == nil {
			schedule(why == watchAged, why == watchProbing)
			continue
		}
		m.switchTo(l, nl, sw)
		l = nl
		schedule(true, true)
	}
}

// watch waits until l is lost, the Manager is closed, or a switch is due:
// at ageAt or probeAt (ns since the epoch; 0: never). Once l has lived its
// proof age, it notes whether the peer's FIN had come by then (see
// checkPeer).
func (m *Manager) watch(l *link, ageAt, probeAt int64) watchEnd {
	if l.watched && !l.classified.Load() {
		if end, ok := m.watchUntilProven(l); !ok {
			return end
		}
	}
	if ageAt == 0 && probeAt == 0 {
		// A Manager with one endpoint waits here, in a small frame: see
		// run.
		select {
		case <-l.dead:
			return watchLost
		case <-m.closing:
			return watchClosed
		}
	}
	return m.watchTimed(l, ageAt, probeAt)
}

// watchUntilProven waits until l has lived its proof age, and classifies
// its peer's FIN; false if l was lost or the Manager closed before.
//
//go:noinline
func (m *Manager) watchUntilProven(l *link) (watchEnd, bool) {
	// From the dial, not from now: the logger and hook have run since.
	t := time.NewTimer(time.Duration(l.born + l.proofAge - m.now()))
	defer t.Stop()
	select {
	case <-l.dead:
		return watchLost, false
	case <-m.closing:
		return watchClosed, false
	case <-t.C:
		m.classifyFIN(l)
	}
	return 0, true
}

// watchTimed is watch with a switch due.
//
//go:noinline
func (m *Manager) watchTimed(l *link, ageAt, probeAt int64) watchEnd {
	var aged, probing <-chan time.Time
	if ageAt != 0 {
		t := time.NewTimer(time.Duration(ageAt - m.now()))
		defer t.Stop()
		aged = t.C
	}
	if probeAt != 0 {
		t := time.NewTimer(time.Duration(probeAt - m.now()))
		defer t.Stop()
		probing = t.C
	}
	select {
	case <-l.dead:
		return watchLost
	case <-m.closing:
		return watchClosed
	case <-aged:
		return watchAged
	case <-probing:
		return watchProbing
	}
}

// classifyFIN runs l.classifyFIN in the Manager's goroutine. A connection
// whose RawConn panics is lost, not the program.
func (m *Manager) classifyFIN(l *link) {
	defer m.loseOnPanic(l)
	l.classifyFIN()
}

// sleep waits d through the AfterFunc; false means the Manager was closed.
//
//go:noinline
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
	if ev.Switch == NoSwitch || m.stats.State != ev.State {
		m.stats.Since = time.Now()
	}
	m.stats.State = ev.State
	m.stats.Endpoint = ""
	if ev.State == Connected {
		m.stats.Endpoint = ev.Endpoint
	}
	if ev.Switch != NoSwitch {
		m.stats.Switches++
	}
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
	addr := m.address
	switch e := ev.Err.(type) {
	case *EndpointsError:
		addr = strings.Join(e.Endpoints, ",")
	default:
		if ev.Endpoint != "" {
			addr = ev.Endpoint
		}
	}
	kv := []any{level.Key(), level.InfoValue(), "msg", msg, "network", m.network, "address", addr}
	if ev.Switch != NoSwitch {
		kv = append(kv, "switch", ev.Switch.String())
	}
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
