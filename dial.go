package conn

import (
	"context"
	"errors"
	"net"
	"slices"
	"time"
)

// errAborted: a switch's round of dials gave way to a redial.
var errAborted = errors.New("conn: dials aborted")

// dialRound makes one round of dials over order, the endpoints in the
// order of the policy, and returns a link to the first that connects, or
// why none did. One endpoint is dialed in the Manager's goroutine, as it
// always was. Several are dialed staggered (see WithDialStagger): each in
// a goroutine of its own, the next when the previous fails or has hung for
// the stagger; the round returns when all have ended, the losers closed.
// The round ends early when the Manager is closed, or when abort is
// closed (the connection a switch would replace was lost: its redial must
// not wait for the switch's dials).
func (m *Manager) dialRound(order []string, abort <-chan struct{}) (*link, error) {
	if len(order) == 1 && abort == nil {
		return m.dialSole(order[0])
	}
	ctx, cancel, ok := m.cancellable(0)
	if !ok {
		return nil, ErrClosed
	}
	defer m.endCancellable(cancel)
	return m.dialStaggered(ctx, cancel, order, abort)
}

// cancellable returns a context that Close cancels, and that ends after
// timeout (none if 0), for a dial or a lookup in the Manager's goroutine;
// end it with endCancellable. It reports false if the Manager is closed.
// The context is not derived from one that Close cancels: a parent would
// keep a map of children for the Manager's lifetime. Close calls
// m.cancelDial instead.
func (m *Manager) cancellable(timeout time.Duration) (context.Context, context.CancelFunc, bool) {
	ctx, cancel := context.WithCancel(context.Background())
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), timeout)
	}
	if !m.setCancel(cancel) {
		cancel()
		return nil, nil, false
	}
	return ctx, cancel, true
}

func (m *Manager) endCancellable(cancel context.CancelFunc) {
	m.setCancel(nil)
	cancel()
}

// dialSole is dialRound over one endpoint, in the Manager's goroutine,
// without the locals of a staggered round: the goroutine's stack grows to
// what the deepest dial needs.
func (m *Manager) dialSole(address string) (*link, error) {
	ctx, cancel, ok := m.cancellable(m.cfg.dialTimeout)
	if !ok {
		return nil, ErrClosed
	}
	defer m.endCancellable(cancel)
	start := m.now()
	c, err := m.connect(ctx, address)
	if err != nil {
		return nil, sane(err)
	}
	l := m.newLink(c, start)
	l.endpoint = address
	return l, nil
}

// dialStaggered is dialRound over several endpoints, or one that gives way
// to abort. Apart, so that the Manager's goroutine, which dials in its
// own stack, does not grow it for locals that one endpoint never uses.
//
//go:noinline
func (m *Manager) dialStaggered(ctx context.Context, cancel context.CancelFunc, order []string, abort <-chan struct{}) (*link, error) {
	var stagger time.Duration
	if m.sw != nil {
		stagger = m.sw.stagger
	}
	type result struct {
		i   int
		l   *link
		err error
	}
	var (
		results = make(chan result, len(order))
		errs    = make([]error, len(order))
		started int
		pending int
		won     *link
		timer   *time.Timer
		aborted bool
	)
	next := func() {
		i := started
		started, pending = started+1, pending+1
		go func() {
			l, err := m.dial(ctx, order[i])
			results <- result{i, l, err}
		}()
		if stagger > 0 && started < len(order) {
			if timer == nil {
				timer = time.NewTimer(stagger)
			} else {
				timer.Reset(stagger)
			}
		}
	}
	next()
	for pending > 0 && won == nil && !aborted {
		var staggered <-chan time.Time
		if timer != nil && started < len(order) {
			staggered = timer.C
		}
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				won = r.l
				break
			}
			errs[r.i] = r.err
			if started < len(order) && ctx.Err() == nil {
				next()
			}
		case <-staggered:
			next()
		case <-abort:
			aborted = true
		}
	}
	if timer != nil {
		timer.Stop()
	}
	cancel()
	for ; pending > 0; pending-- {
		if r := <-results; r.l != nil {
			closeConn(r.l.conn) // connected after the winner
		}
	}
	switch {
	case won != nil:
		return won, nil
	case m.isClosed():
		return nil, ErrClosed
	case aborted:
		return nil, errAborted
	}
	return nil, &EndpointsError{Endpoints: slices.Clone(order[:started]), Errs: errs[:started]}
}

// setCancel records the function that ends the dial under way, for
// Close; nil when it has ended. It reports false if the Manager is
// closed: do not dial.
func (m *Manager) setCancel(cancel context.CancelFunc) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cancel != nil && m.isClosed() {
		return false
	}
	m.cancelDial = cancel
	return true
}

// dial makes one attempt on address. It returns a link, or why there is
// none. The attempt ends when it succeeds, fails, the dial timeout passes,
// or ctx ends.
func (m *Manager) dial(ctx context.Context, address string) (*link, error) {
	if m.cfg.dialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.cfg.dialTimeout)
		defer cancel()
	}
	start := m.now()
	c, err := m.connect(ctx, address)
	if err != nil {
		return nil, sane(err)
	}
	l := m.newLink(c, start)
	l.endpoint = address
	return l, nil
}

// connect calls the Dialer and completes the TLS handshake of what it
// returns, so that Write never handshakes: a tls.Client that was not yet
// used would otherwise handshake inside the first Write, whose reads have no
// deadline. A panic of the Dialer or of the connection is a failed dial.
func (m *Manager) connect(ctx context.Context, address string) (c net.Conn, err error) {
	defer func() {
		if p := recovered("Dialer", recover()); p != nil {
			if !isNil(c) {
				closeConn(c)
			}
			c, err = nil, p
		}
	}()
	c, err = m.cfg.dial(ctx, m.network, address)
	if err != nil {
		if !isNil(c) {
			closeConn(c)
		}
		return nil, err
	}
	if isNil(c) {
		return nil, errNilConn
	}
	if hs, ok := c.(interface{ HandshakeContext(context.Context) error }); ok {
		if err := hs.HandshakeContext(ctx); err != nil {
			closeConn(c)
			return nil, err
		}
	}
	return c, nil
}

// contextless adapts a Dialer, which cannot be cancelled, to a
// DialContextFunc that can: the dial runs in a goroutine of its own, and a
// cancelled attempt is abandoned. That goroutine ends when the Dialer
// returns, closing any connection that came too late.
func contextless(d Dialer) DialContextFunc {
	type result struct {
		c   net.Conn
		err error
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		done := make(chan result)
		go func() {
			var r result
			func() {
				defer func() {
					if p := recovered("Dialer", recover()); p != nil {
						r = result{nil, p}
					}
				}()
				r.c, r.err = d(network, address)
			}()
			select {
			case done <- r:
			case <-ctx.Done():
				if !isNil(r.c) {
					closeConn(r.c)
				}
			}
		}()
		select {
		case r := <-done:
			return r.c, r.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
