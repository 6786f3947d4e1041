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
	c, err := m.cfg.dial(ctx, m.network, m.address)
	if err != nil {
		if !isNil(c) {
			c.Close()
		}
		return nil, err
	}
	if isNil(c) {
		return nil, errNilConn
	}
	return m.newLink(c, start), nil
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
			c, err := d(network, address)
			select {
			case done <- result{c, err}:
			case <-ctx.Done():
				if !isNil(c) {
					c.Close()
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
