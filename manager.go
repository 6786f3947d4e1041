package conn

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// Manager manages a net.Conn.
//
// Clients provide a way to create the connection with a Dialer, network, and
// address. Clients should Take the connection when they want to use it, and
// Put back whatever error they receive from its use. When a non-nil error is
// Put, the connection is invalidated, and a new connection is established.
// Connection failures are retried after an exponential backoff.
//
// Write does the Take and Put itself and does more: it bounds each write by
// the write timeout, checks a connection that sat idle before writing on it,
// and redials at once to send on a fresh connection when a connection that
// had been working turns out to be dead before anything was sent on it.
//
// With several endpoints (WithEndpoints, WithDiscovery) the Manager holds
// one connection at a time, to one of them, and may replace a working
// connection by another (WithMaxConnectionAge, Priority's fail-back):
// Take then returns the new connection, and the old one is closed once the
// Writes under way on it have returned. On the standard library's sockets
// and *tls.Conn that costs a Write nothing (the switch closes them between
// two Writes, under their own lock); on other connections each Write
// counts itself in and out, a few nanoseconds.
//
// All methods are safe for concurrent use. Make a Manager with New,
// NewManager or NewDefaultManager; the zero value is not usable, and a
// Manager must not be copied. Close it when done: until then it keeps one
// goroutine and its connection.
type Manager struct {
	cur     atomic.Pointer[link]             // the latest link; nil until the first dial succeeds
	unavail atomic.Pointer[UnavailableError] // what Write returns without a connection; nil: ErrConnectionUnavailable

	network, address string
	cfg              config
	sw               *switcher     // several endpoints; nil without their options
	epoch            time.Time     // the origin of m.now
	refreshBelow     int64         // refresh the write deadline when less than this is left
	expiryGrace      time.Duration // see armDeadline
	connectWait      time.Duration // the longest a Take or Write waits for a dial

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	firstDial chan struct{} // closed when the first dial attempt has finished
	firstOver atomic.Bool   // a wait for the first dial has timed out: wait no more
	done      chan struct{} // closed when run returns

	// User code that panicked is not called again (guard.go). hookOff
	// belongs to the goroutine that delivers notes, afterOff to the
	// Manager's.
	logOff            atomic.Bool
	hookOff, afterOff bool

	delivering sync.WaitGroup // the goroutine delivering notes (notify.go)

	mu         sync.Mutex
	stats      Stats
	cancelDial context.CancelFunc // ends the dial under way; nil if none
	changed    chan struct{}      // closed by the next change of state; nil if nobody waits
	notes      []note             // log lines and events waiting for delivery
	notifying  bool               // a goroutine delivers notes
	notesOver  bool               // Close has delivered the last notes
	noteTaken  chan struct{}      // closed when a note is taken; nil if nobody waits for room
}

// New returns a Manager for the given network and address (as for
// net.Dial), configured by the options, and starts dialing in the
// background. It never blocks. Invalid option values are logged and replaced
// by the defaults.
func New(network, address string, opts ...Option) *Manager {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	m := &Manager{
		network:      network,
		address:      address,
		cfg:          cfg,
		epoch:        time.Now(),
		refreshBelow: int64(cfg.writeTimeout - cfg.writeTimeout/8),
		expiryGrace:  min(expiryGrace, cfg.writeTimeout/8),
		connectWait:  connectWait,
		closing:      make(chan struct{}),
		firstDial:    make(chan struct{}),
		done:         make(chan struct{}),
	}
	if cfg.writeTimeout > 0 {
		m.connectWait = min(connectWait, cfg.writeTimeout)
	}
	m.stats.Since = m.epoch
	var problems []string
	m.sw, problems = newSwitcher(address, cfg.multi)
	for _, p := range append(cfg.problems, problems...) {
		m.log(level.WarnValue(), "invalid option", "problem", p)
	}
	go m.run()
	return m
}

// NewManager returns a connection manager using the passed Dialer, network, and
// address. The AfterFunc is used to control exponential backoff and retries.
// The logger is used to log errors; pass a log.NopLogger if you don't care to
// receive them. For normal use, prefer NewDefaultManager.
//
// A nil Dialer means net.Dial, a nil AfterFunc time.After, and a nil logger
// discards. The Dialer cannot be cancelled: when the dial timeout passes or
// the Manager is closed during a dial, the attempt is abandoned and its
// goroutine ends when the Dialer returns. Use New with WithDialer for a dial
// that Close interrupts.
func NewManager(d Dialer, network, address string, after AfterFunc, logger log.Logger) *Manager {
	return New(network, address, withDialerFunc(d), WithAfterFunc(after), WithLogger(logger), bareErrors)
}

// NewDefaultManager is a helper constructor, suitable for most normal use in
// real (non-test) code. It uses the real net.Dial and time.After functions.
func NewDefaultManager(network, address string, logger log.Logger) *Manager {
	return New(network, address, WithLogger(logger), bareErrors)
}

// Take yields the current connection. It may be nil.
//
// The first call waits for the first dial attempt to finish, but no longer
// than a second; after that Take never blocks. It returns nil while there is
// no connection, and after Close. A connection that Take returned may since
// have been replaced; Put its errors back. Take costs an atomic load and
// does not check the connection: Write does that. Write keeps a write
// deadline set on the connection (see WithWriteTimeout); set your own before
// writing to a Taken connection directly.
func (m *Manager) Take() net.Conn {
	l := m.cur.Load()
	if l != nil && !l.retired.Load() {
		return l.conn
	}
	if l == nil {
		if l = m.awaitFirst(); l != nil {
			return l.conn
		}
	}
	return nil
}

// Put accepts an error that came from a previously yielded connection. If the
// error is non-nil, the manager will invalidate the current connection and try
// to reconnect, with exponential backoff. Putting a nil error is a no-op.
//
// Put is not told which connection the error came from. An error from the
// net package names the addresses of its connection; if they are not those
// of the current connection, the error is about an older one and Put does
// nothing, so that late reports cannot tear down a fresh connection. Any
// other error invalidates the current connection, including a nil pointer
// of an error type (a typed nil), which is not a nil error. Write never has
// this ambiguity. A Manager that may switch connections (several
// endpoints, a maximum age) ignores an error matching net.ErrClosed: it
// closes connections only once they are no longer current, so such an
// error came from one it replaced. Put never blocks, never panics, whatever the error value
// (one whose methods panic is recorded as a stand-in that names its type),
// and does nothing after Close.
func (m *Manager) Put(err error) {
	if err == nil {
		return
	}
	err = sane(err)
	if m.sw != nil && errors.Is(err, net.ErrClosed) {
		// The Manager closes a connection only once it is no longer
		// current: this one came from a connection a switch replaced.
		return
	}
	if l := m.live(); l != nil && l.mayHaveCaused(err) {
		m.retire(l, err)
	}
}

// Write writes the passed data to the connection in a single Take/Put cycle.
//
// It returns what the connection's Write returned, except that:
//   - with no connection it returns ErrConnectionUnavailable at once (the
//     first Write waits up to a second for the first dial); nothing was
//     written;
//   - after Close it returns an error matching ErrClosed;
//   - a Write that finds its connection dead before writing any byte — the
//     peer closed it while it sat idle, or it failed with nothing written —
//     and whose connection had proven itself by carrying an earlier Write,
//     waits for the immediate redial (up to a second, or the write timeout
//     if shorter) and writes on the new connection; the caller sees neither
//     the error nor a loss. Writes that arrive together after a pause all
//     wait for the one liveness check the first of them runs, and all get
//     this redial;
//   - a Write that cannot make progress fails with a timeout error
//     (os.ErrDeadlineExceeded) within the write timeout (WithWriteTimeout)
//     of the moment it started writing, whatever other Writes do: Writes
//     that arrive after a stalled one do not prolong it, and those queued
//     behind it on the connection fail with it.
//
// A failed Write invalidates the connection it was written on, and only
// that one: the Manager redials once however many Writes failed on it. The
// exception is a datagram too large to send (EMSGSIZE): the connection is
// kept. Each call is one Write on the connection, so concurrent calls are
// not interleaved on a stream socket. Write allocates nothing. A panic of
// the connection's own methods is not recovered: it is raised in the
// caller's goroutine, as a direct call would.
func (m *Manager) Write(b []byte) (int, error) {
	l := m.cur.Load()
	if l != nil && !l.retired.Load() {
		// writeOn's first attempt, here: a call more costs every Write.
		var (
			n   int
			err = errLinkLeft
		)
		if !l.counted {
			n, err = m.write(l, b, true)
		} else if st := l.enter(); st != nil {
			n, err = m.writeEntered(l, st, b, true)
		}
		if err != errLinkLeft {
			return n, err
		}
		l = m.cur.Load() // made current before l was switched out
	}
	return m.writeOn(l, b, true)
}

// live returns the current link, or nil if it is dead or there is none.
func (m *Manager) live() *link {
	if l := m.cur.Load(); l != nil && !l.retired.Load() {
		return l
	}
	return nil
}

// Close stops the Manager: it ends a dial or a backoff wait in progress,
// closes the connection, and returns when the Manager's goroutine has ended
// and its last log lines and hook calls have been delivered.
// Writes under way on the connection fail; after Close, Take returns nil,
// Put does nothing and Write returns ErrClosed. Close is idempotent and safe
// to call concurrently with every other method; it returns nil. A Dialer
// given to NewManager cannot be interrupted: its goroutine ends when it
// returns, and a connection it returns then is closed at once.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		close(m.closing)
		m.mu.Lock()
		if m.cancelDial != nil {
			m.cancelDial()
		}
		m.mu.Unlock()
		m.stopDiscovery()
	})
	<-m.done
	m.endNotes()
	return nil
}

// Stats returns a snapshot of the Manager's counters and state. It is safe
// for concurrent use, also after Close.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	st := m.stats
	m.mu.Unlock()
	return st
}

// unavailable is the error of a Write that found no connection: for New's
// Managers, ErrConnectionUnavailable with the latest cause; for go-kit's
// constructors, or before any cause, ErrConnectionUnavailable itself.
func (m *Manager) unavailable() error {
	if e := m.unavail.Load(); e != nil {
		return e
	}
	return ErrConnectionUnavailable
}

func (m *Manager) isClosed() bool {
	select {
	case <-m.closing:
		return true
	default:
		return false
	}
}

// now reads the monotonic clock only: cheaper than time.Now.
func (m *Manager) now() int64 {
	return int64(time.Since(m.epoch))
}
