package conn_test

import (
	"context"
	"net"
	"os"
	"testing"

	"github.com/seed44b27a20/conn"
)

// contextFree adapts a Dialer for WithDialer, ignoring the context: for
// dials that cannot block.
func contextFree(d conn.Dialer) conn.DialContextFunc {
	return func(_ context.Context, network, address string) (net.Conn, error) {
		return d(network, address)
	}
}

// scenario marks a long scenario on real sockets (a second or more): it is
// skipped under -short, or when CONN_SHORT is set, which is how
// .ci/mutation judges mutants with the fast tests first.
func scenario(t *testing.T) {
	t.Helper()
	if testing.Short() || os.Getenv("CONN_SHORT") != "" {
		t.Skip("a long socket scenario: skipped with -short or CONN_SHORT")
	}
}
