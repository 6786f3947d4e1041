package conn

import (
	"context"
	"net"
)

// dial makes one attempt. It returns a link, or why there is none. The
// attempt ends when it succeeds, fails, the dial timeout passes, or the
// Manager is closed.
func (m *Manager) dial() (*link, error) {
	ctx, cancel := m.ctx, context.CancelFunc(func() {})
	if m.cfg.dialTimeout > 0 {
		ctx, cancel = context.WithTimeout(m.ctx, m.cfg.dialTimeout)
	}
	defer cancel()
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
