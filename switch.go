package conn

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/go-kit/log/level"
)

// A Manager with several endpoints or a maximum age replaces working
// connections: it rotates them (WithMaxConnectionAge), moves back to a
// higher endpoint (Priority), and follows a datagram endpoint whose
// address changed. Each switch dials the replacement first, makes it
// current, and closes the old link once the Writes under way on it have
// returned: the connection's fence tells when that is (fence.go), or, on
// a connection without one, the Writes count themselves in and out of
// their link (link.enter). A Write that finds its link switched out moves
// to the current one.

// errSwitched is the cause recorded for a link closed by a switch.
var errSwitched = errors.New("conn: connection replaced by another")

// sole returns the endpoint of a round over one, or "" for several.
func sole(order []string) string {
	if len(order) == 1 {
		return order[0]
	}
	return ""
}

// probes reports whether a Manager on a lower endpoint probes the ones
// above it.
func (m *Manager) probes() bool {
	return m.sw != nil && m.sw.policy == Priority && (len(m.sw.list) > 1 || m.sw.discover != nil)
}

// replacement dials the link to replace l with, for why, and returns it
// with the kind of switch; nil when none is due or none connected.
//
// Everything it waits for — discovery, a DNS lookup, the dials — gives way
// as soon as l is lost, so that the redial that answers the loss is not
// held up by a probe of a blackholed primary.
func (m *Manager) replacement(l *link, why watchEnd) (*link, Switch) {
	m.refresh(l.dead)
	var (
		order []string
		sw    Switch
	)
	switch {
	case why == watchProbing:
		order, sw = m.above(l.endpoint), Failback
	case isDatagram(m.network):
		if !m.moved(l) {
			return nil, NoSwitch
		}
		order, sw = m.order(), Move
	default:
		order, sw = m.order(), Rotation
	}
	if len(order) == 0 {
		return nil, NoSwitch
	}
	nl, err := m.dialRound(order, l.dead)
	if err == errAborted || m.isClosed() {
		return nil, NoSwitch
	}
	m.count(err)
	if err != nil {
		if sw != Failback { // a failed probe is the expected case
			m.log(level.WarnValue(), "switch failed; keeping the connection", "switch", sw.String(), "address", l.endpoint, "err", err)
		}
		return nil, NoSwitch
	}
	return nl, sw
}

// switchTo makes nl current in place of l, and closes l once the Writes
// under way on it have returned. If l was lost while nl was dialed, nl
// simply replaces it, as a redial would.
func (m *Manager) switchTo(l, nl *link, sw Switch) {
	// In the list before nl is current, so that a BatchWriter's Close
	// that sees nl also interrupts what is stalled on l.
	m.sw.mu.Lock()
	m.sw.draining = append(m.sw.draining, l)
	m.sw.mu.Unlock()
	nl.via = sw
	m.cur.Store(nl)
	l.switched.Store(true)
	if l.retired.Load() {
		m.undrain(l)
		<-l.dead
		m.enter("connection lost", Event{State: Disconnected, Err: l.cause, Endpoint: l.endpoint})
		m.enter("connected", Event{State: Connected, Endpoint: nl.endpoint})
		close(l.next)
		return
	}
	if l.counted {
		l.drain()
	}
	m.enter("switched", Event{State: Connected, Endpoint: nl.endpoint, Switch: sw})
	close(l.next)
	m.sw.drainers.Add(1)
	go func() {
		defer m.sw.drainers.Done()
		if m.closeWrites(l) {
			m.linger(l)
		}
		m.retire(l, errSwitched)
		m.undrain(l)
	}()
}

// closeWrites closes the switched-out link l for writing once no Write is
// under way on it, and reports whether it did. It does not when l is to
// be closed at once: a datagram socket, a connection that cannot close
// only for writing, l lost meanwhile, or the Manager closed (Close closes
// l, which ends a wait for its fence).
func (m *Manager) closeWrites(l *link) (closed bool) {
	defer m.loseOnPanic(l)
	switch l.fence {
	case fenceShutdown:
		err := shutdownBetweenWrites(l.conn.(syscall.Conn))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The write deadline had passed (an idle link's, or one
			// BatchWriter.Close expired): the fence checks it under the
			// write lock, so no Write was under way. Clear it, unless a
			// Write armed a fresh one meanwhile (then the fence waits for
			// that Write, within its deadline), and fence again. A later
			// Write arms its own.
			m.clearExpiredDeadline(l)
			err = shutdownBetweenWrites(l.conn.(syscall.Conn))
		}
		return err == nil
	case fenceClose:
		return false
	case fenceNone:
		select {
		case <-l.drained:
		case <-l.dead: // lost meanwhile
			return false
		case <-m.closing:
			return false
		}
	}
	cw, ok := l.conn.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}

// maxLinger bounds how long a switched-out connection waits for its
// peer's close; one read by an acknowledged session waits as long as its
// ack timeout, if longer (the session leaves it at that timeout).
const maxLinger = 10 * time.Second

// linger reads what the peer of the switched-out stream connection l
// sends, discarding it, until the peer closes its side too (or maxLinger
// passes); l is closed for writing. Closing a socket with unread input
// makes the kernel send a reset, which discards what it had not yet
// delivered: a peer that ever said anything (a banner, a TLS 1.3 session
// ticket) would lose the last lines written on l. The FIN instead comes
// after them, and a peer closes its side once it has read them.
func (m *Manager) linger(l *link) {
	defer m.loseOnPanic(l)
	if done := l.reader.Load(); done != nil {
		// Another goroutine reads this connection (an acknowledged
		// session): reading here too would split its answers between
		// two readers, and a frame pieced together from both could
		// acknowledge what the peer refused. Its reader sees the peer's
		// close.
		t := time.NewTimer(max(m.cfg.maxLinger, time.Duration(l.lingerFor.Load())))
		defer t.Stop()
		select {
		case <-*done:
		case <-t.C:
		case <-m.closing:
		}
		return
	}
	if l.conn.SetReadDeadline(time.Now().Add(m.cfg.maxLinger)) != nil {
		return
	}
	var buf [512]byte
	for {
		if _, err := l.conn.Read(buf[:]); err != nil {
			return
		}
	}
}

// undrain removes l from the links being switched out.
func (m *Manager) undrain(l *link) {
	m.sw.mu.Lock()
	m.sw.draining = slices.DeleteFunc(m.sw.draining, func(d *link) bool { return d == l })
	m.sw.mu.Unlock()
}

// abortDrains closes the links being switched out, for Close: those
// still lingering stop waiting for their peers.
func (m *Manager) abortDrains() {
	m.sw.mu.Lock()
	links := slices.Clone(m.sw.draining)
	m.sw.mu.Unlock()
	for _, l := range links {
		m.retire(l, ErrClosed)
	}
}

// enter counts a Write under way on l, in a stripe of the count that
// Writes on other cores seldom share: one shared counter made every Write
// move its cache line between cores (+35 ns a Write at 8 goroutines). It
// returns the stripe, for leave, or nil, counting nothing, once l is being
// switched out: write on the current link.
func (l *link) enter() *inflightStripe {
	st := &l.inflight[stripeOf()&(len(l.inflight)-1)]
	st.n.Add(1)
	if !l.draining.Load() {
		return st
	}
	l.leave(st)
	return nil
}

// leave counts a Write on l out of the stripe enter counted it in.
func (l *link) leave(st *inflightStripe) {
	// enter adds, then reads draining; drain sets draining, then reads
	// the stripes: one of the two sees the other. A Write adds and
	// subtracts in one stripe, so a stripe is never 0 while a Write that
	// entered it is under way, and the last to leave sees every stripe 0.
	if st.n.Add(-1) == 0 && l.draining.Load() && l.idle() {
		l.signalDrained()
	}
}

// idle reports whether no Write is counted in any stripe.
func (l *link) idle() bool {
	for i := range l.inflight {
		if l.inflight[i].n.Load() != 0 {
			return false
		}
	}
	return true
}

// drain marks l as being switched out; l.drained is closed once no Write
// is under way on it.
func (l *link) drain() {
	l.drained = make(chan struct{}) // before draining: leave reads it after
	l.draining.Store(true)
	if l.idle() {
		l.signalDrained()
	}
}

func (l *link) signalDrained() {
	if l.drainedOnce.CompareAndSwap(false, true) {
		close(l.drained)
	}
}

// moved reports whether the datagram link l should move: discovery no
// longer lists its endpoint, or the endpoint's name no longer resolves to
// the address l sends to. A lookup that fails changes nothing.
func (m *Manager) moved(l *link) bool {
	if !slices.Contains(m.sw.list, l.endpoint) {
		return true
	}
	host, _, err := net.SplitHostPort(l.endpoint)
	if err != nil || host == "" {
		return false // a socket path, or no host: nothing to resolve
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return false
	}
	remote, ok := remoteIP(l.conn)
	if !ok {
		return false
	}
	ctx, cancel, ok := m.cancellable(m.cfg.dialTimeout)
	if !ok {
		return false
	}
	defer m.endCancellable(cancel)
	done := make(chan struct{})
	defer close(done)
	go func() { // the lookup gives way when l is lost
		select {
		case <-l.dead:
			cancel()
		case <-done:
		}
	}()
	addrs, err := m.sw.lookup(ctx, host)
	if err != nil || len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if a.Unmap() == remote {
			return false
		}
	}
	return true
}

// remoteIP returns the IP address a connection sends to, if it has one.
func remoteIP(c net.Conn) (ip netip.Addr, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}
