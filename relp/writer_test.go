package relp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
	"github.com/seed44b27a20/conn/relp/relptest"
)

// The real BatchWriter over RELP: connections reset and closed mid-stream
// lose nothing, and refusals are counted.
func TestBatchWriterFailures(t *testing.T) {
	s := relptest.NewServer(t, relptest.WithAnswer(func(m []byte) (int, string) {
		if string(m) == "msg 7" {
			return 500, "refused"
		}
		return 200, "OK"
	}))
	m := conn.New("tcp", s.Addr())
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(relp.New()), conn.WithWaitWhenFull(10*time.Second))
	const n = 3000
	for i := range n {
		fmt.Fprintf(w, "msg %d\n", i)
		switch i {
		case 1000:
			s.Reset()
		case 2000:
			s.CloseAfter(5)
		case 2500:
			s.ServerClose()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err == nil {
		t.Error("Flush: nil, want the refusal reported")
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	got := map[string]bool{}
	for _, msg := range s.Messages() {
		got[msg] = true
	}
	for i := range n {
		if !got[fmt.Sprint("msg ", i)] {
			t.Fatalf("msg %d never arrived", i)
		}
	}
	if st := w.Stats(); st.Refused != 1 || st.Acked != n-1 {
		t.Errorf("stats: refused %d, acked %d; want 1, %d", st.Refused, st.Acked, n-1)
	}
}
