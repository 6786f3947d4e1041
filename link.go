package conn

import (
	"errors"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// minProofAge: a connection lost sooner than this after it was dialed
	// has not proven itself, whatever it carried. It stops a peer that
	// accepts and drops at once from driving redials in a tight loop when
	// a Write happens to reach the socket before the peer's FIN.
	minProofAge = 10 * time.Millisecond
)

// A link is one dialed connection and what the Manager knows about it. It
// is handed out from its dial until retire marks it dead; it stays in
// Manager.cur, dead, until the next link replaces it.
type link struct {
	conn     net.Conn
	fence    fence   // how a switch closes conn between two Writes (fence.go)
	counted  bool    // Writes count themselves in inflight: the link may be switched out, and has no fence
	endpoint string  // the address dialed
	probe    *prober // the kernel's view of the socket; nil without one
	dialTime int64   // how long the dial took: a round trip at least
	watched  bool    // the liveness check applies: a stream socket
	born     int64   // when the dial finished, ns since the Manager's epoch
	proofAge int64   // how long the link must live to prove itself
	clocked  bool    // Write reads the clock: a write timeout, or watched

	lastWrite  atomic.Int64 // coarse time of the last Write, ns since epoch
	lastCheck  atomic.Int64 // time of the last liveness check, ns since epoch
	deadline   atomic.Int64 // write deadline set on conn, ns since epoch; 0: none
	deadlineMu sync.Mutex   // serialises setting the deadline
	// blindArm: the deadline was moved without the kernel's word that no
	// Write is blocked, and no Write has completed since. See armDeadline.
	blindArm atomic.Bool
	wrote    atomic.Bool // a Write through the Manager succeeded on conn

	// The liveness check (liveness.go). checkMu serialises checks and
	// guards the verdict of the latest.
	checkMu    sync.Mutex
	checkedAt  int64 // when the latest check began, ns since epoch
	checkFIN   bool
	checkErr   error
	earlyFIN   atomic.Bool   // the peer's FIN arrived within proofAge of the dial
	classified atomic.Bool   // classifyFIN has run: earlyFIN is final
	heldOpen   atomic.Bool   // the peer still held it open at its proof age (classifyFIN)
	idleClosed atomic.Bool   // a check found it closed by a peer that had held it open
	resetCap   time.Duration // the longest confirmWrite waits for a reset
	halfClose  atomic.Int32  // what the peer did with a Write after its early FIN: tookData, or halfCloser
	// halfClosedBefore: the endpoint of the previous connection, if its
	// peer took data after an early FIN too. See confirmWrite.
	halfClosedBefore string
	checks           atomic.Int64 // checks run, for the tests of when they run

	retired    atomic.Bool   // set once, by retire
	dead       chan struct{} // closed by retire when it has finished
	next       chan struct{} // closed when the first dial after retire has finished
	redialSlow atomic.Bool   // a wait for next timed out: wait no more

	// Switching (switch.go). inflight counts the Writes under way, in
	// stripes (a power of two of them; nil unless counted); once draining
	// is set, drained is closed when none is left.
	inflight    []inflightStripe
	draining    atomic.Bool
	drainedOnce atomic.Bool
	drained     chan struct{}
	switched    atomic.Bool // another link replaced this working one
	// reader, when set, is closed once the goroutine that owns conn's
	// input (a BatchWriter's acknowledged session) has returned: a
	// switched-out link then lingers without reading, so that no byte of
	// the session's answers goes astray.
	reader atomic.Pointer[chan struct{}]
	// lingerFor, with reader set, is how long a switch lingers for that
	// goroutine at least (a BatchWriter's ack timeout: it waits that long
	// for the answers to what the link carried).
	lingerFor atomic.Int64
	via       Switch // how this link replaced a working one; set before it is current

	// Set by retire before dead is closed.
	cause  error
	redial bool // the Manager redials at once, without backoff
}

func (m *Manager) newLink(c net.Conn, dialStart int64) *link {
	now := m.now()
	l := &link{
		conn:     c,
		probe:    newProber(c, m.cfg.probe),
		born:     now,
		dialTime: now - dialStart,
		proofAge: max(int64(minProofAge), 4*(now-dialStart)),
		dead:     make(chan struct{}),
		next:     make(chan struct{}),
		resetCap: maxResetWait,
	}
	if m.cfg.multi.switches() {
		l.fence = fenceOf(c)
		l.counted = l.fence == fenceNone
	}
	if l.counted {
		l.inflight = make([]inflightStripe, inflightStripes())
	}
	if m.cfg.writeTimeout > 0 {
		// The Writes that arrive meanwhile wait for the verdict: keep the
		// wait within the slack of their timeout.
		l.resetCap = min(maxResetWait, m.cfg.writeTimeout/8)
	}
	if prev := m.cur.Load(); prev != nil && prev.halfClose.Load() != 0 {
		l.halfClosedBefore = prev.endpoint
	}
	l.watched = l.probe != nil && l.probe.stream
	l.clocked = m.cfg.writeTimeout != 0 || l.watched
	l.lastWrite.Store(now - int64(idleAfter)) // check before the first Write
	return l
}

// proven reports whether l carried a successful Write and lived long enough
// for that to mean something, or its peer took data after an early FIN
// (it does not accept and drop), or its peer held it open for its proof age
// and closed it later, before any Write (a server that drops idle clients
// does that to a connection dialed after a loss): its loss then resets the
// backoff and is answered by an immediate redial.
func (l *link) proven(now int64) bool {
	return l.idleClosed.Load() || l.wrote.Load() && (now-l.born >= l.proofAge || l.halfClose.Load() != 0)
}

// mayHaveCaused reports whether err, Put without a connection, may have come
// from l. Errors from the net package name the addresses of the connection
// they came from; one naming other addresses came from an older connection.
// Any other error is taken to be about l.
func (l *link) mayHaveCaused(err error) (may bool) {
	defer func() {
		if recover() != nil {
			may = true // the connection's LocalAddr or RemoteAddr panicked
		}
	}()
	var op *net.OpError
	if !errors.As(err, &op) || op == nil {
		return true
	}
	return sameAddr(op.Source, l.conn.LocalAddr()) && sameAddr(op.Addr, l.conn.RemoteAddr())
}

func sameAddr(a, b net.Addr) bool {
	if isNil(a) || isNil(b) {
		return true // cannot tell
	}
	return a.Network() == b.Network() && a.String() == b.String()
}

// refused reports an error caused by an ICMP port unreachable on a connected
// datagram socket: the peer is down, so the loss does not prove anything.
func refused(err error) bool {
	return errors.Is(err, errRefused)
}

// isNil reports whether v is nil or an interface holding a nil pointer, so
// that a Dialer returning a typed nil is treated as returning nothing.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// isTimeout reports whether err is a deadline expiring.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
