package relp_test

import (
	"context"
	"fmt"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
	"github.com/seed44b27a20/conn/relp/relptest"
)

// A BatchWriter delivering over RELP: Flush returns nil once the server
// acknowledged every message written before it.
func Example() {
	srv := relptest.NewServer(nil) // rsyslog would be: input(type="imrelp" port="2514")
	defer srv.Close()

	m := conn.New("tcp", srv.Addr())
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(relp.New()))

	fmt.Fprintln(w, "<13>1 - host app - - - first")
	fmt.Fprintln(w, "<13>1 - host app - - - second")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		fmt.Println("flush:", err)
	}
	if err := w.Close(); err != nil {
		fmt.Println("close:", err)
	}
	fmt.Println("acknowledged:", w.Stats().Acked)
	for _, msg := range srv.Messages() {
		fmt.Printf("%q\n", msg)
	}
	st := srv.Stats()
	fmt.Println("opens:", st.Opens, "closes:", st.Closes)
	// Output:
	// acknowledged: 2
	// "<13>1 - host app - - - first"
	// "<13>1 - host app - - - second"
	// opens: 1 closes: 1
}
