package conn_test

import (
	"context"
	"net"

	"github.com/seed44b27a20/conn"
)

// contextFree adapts a Dialer for WithDialer, ignoring the context: for
// dials that cannot block.
func contextFree(d conn.Dialer) conn.DialContextFunc {
	return func(_ context.Context, network, address string) (net.Conn, error) {
		return d(network, address)
	}
}
