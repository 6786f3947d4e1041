package conn

import (
	"context"
	"net"
)

// dial makes one attempt. It returns a link, or why there is none. The
// attempt ends when it succeeds, fails, the dial timeout passes, or the
// Manager is closed.
func (m *Manager) dial() (*link, error) {
	// The context is not derived from one that Close cancels: a parent would
	// keep a map of children for the Manager's lifetime. Close calls
	// m.cancelDial instead.
	ctx, cancel := context.WithCancel(context.Background())
	if m.cfg.dialTimeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), m.cfg.dialTimeout)
	}
	m.mu.Lock()
	if m.isClosed() {
		m.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	m.cancelDial = cancel
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.cancelDial = nil
		m.mu.Unlock()
		cancel()
	}()
	start := m.now()
	c, err := m.connect(ctx)
	if err != nil {
		return nil, sane(err)
	}
	return m.newLink(c, start), nil
}

// connect calls the Dialer and completes the TLS handshake of what it
// returns, so that Write never handshakes: a tls.Client that was not yet
// used would otherwise handshake inside the first Write, whose reads have no
// deadline. A panic of the Dialer or of the connection is a failed dial.
func (m *Manager) connect(ctx context.Context) (c net.Conn, err error) {
	defer func() {
		if p := recovered("Dialer", recover()); p != nil {
			if !isNil(c) {
				closeConn(c)
			}
			c, err = nil, p
		}
	}()
	c, err = m.cfg.dial(ctx, m.network, m.address)
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
