//go:build unix

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
)

// imrelpDefaults is rsyslog's RELP input with every size left to its
// default: the global maxMessageSize (8096 bytes) bounds what arrives whole,
// whatever imrelp's maxDataSize says (maxDataSize="8k" alone cuts at 8096
// too; with global(maxMessageSize="8k") as well, at 8192).
const imrelpDefaults = `module(load="imrelp")
input(type="imrelp" address="127.0.0.1" port="%[1]s")`

// sizedLine returns a syslog line of exactly n bytes (no newline), its text
// starting with prefix.
func sizedLine(prefix string, n int) string {
	head := string(syslogLine(""))
	head = head[:len(head)-1]
	return head + prefix + strings.Repeat("x", n-len(head)-len(prefix))
}

// Against rsyslog's defaults, relp.RsyslogMaxMessage is exactly the longest
// message that arrives whole: one byte more is acknowledged and arrives
// cut. With conn.WithMaxMessage(relp.RsyslogMaxMessage) nothing cut is
// acknowledged: a longer message is refused by Write, counted and reported.
func TestRelpMessageLimitOfRsyslogDefaults(t *testing.T) {
	needImrelp(t)
	r := startRsyslogInput(t, imrelpDefaults)
	const limit = relp.RsyslogMaxMessage
	sizes := []int{limit - 1, limit, limit + 1, 8192}
	send := func(prefix, newline string, opts ...conn.BatchOption) (refused []int) {
		m := conn.New("tcp", r.addr)
		defer m.Close()
		w := conn.NewBatchWriter(m, append([]conn.BatchOption{conn.WithAcks(relp.New())}, opts...)...)
		defer w.Close()
		for _, n := range sizes {
			_, err := w.Write([]byte(sizedLine(fmt.Sprintf("%s%05d ", prefix, n), n) + newline))
			switch {
			case errors.Is(err, conn.ErrTooLong):
				refused = append(refused, n)
			case err != nil:
				t.Fatalf("%s: Write of %d bytes: %v", prefix, n, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.Flush(ctx); err != nil {
			t.Fatalf("%s: Flush: %v; %+v", prefix, err, w.Stats())
		}
		if st := w.Stats(); st.Rejected != uint64(len(refused)) || st.Acked != uint64(len(sizes)-len(refused)) {
			t.Fatalf("%s: stats %+v, %d refused", prefix, st, len(refused))
		}
		return refused
	}
	if refused := send("plain", "\n"); len(refused) != 0 {
		t.Fatalf("without a limit, Write refused %v", refused)
	}
	// Without a newline: WithMaxMessage counts every byte written (see
	// RsyslogMaxMessage).
	if refused := send("limited", "", conn.WithMaxMessage(limit)); fmt.Sprint(refused) != fmt.Sprint(sizes[2:]) {
		t.Fatalf("with WithMaxMessage(%d), Write refused %v, want %v", limit, refused, sizes[2:])
	}
	r.stop()
	// rsyslog writes %msg%: the line without its header ("<14>... conn:"
	// and the space after it, which lines trims).
	headLen := len(syslogLine("")) - 1
	got := map[string]int{} // by prefix and size: the length of the text that arrived
	for _, l := range r.lines() {
		f := strings.Fields(l)
		if len(f) == 2 {
			got[f[0]] = len(l) + headLen
		}
	}
	for _, n := range sizes {
		whole := n <= limit
		plain := got[fmt.Sprintf("plain%05d", n)]
		switch {
		case whole && plain != n:
			t.Errorf("a message of %d bytes (at most the limit) arrived with %d", n, plain)
		case !whole && plain != limit:
			t.Errorf("a message of %d bytes (over the limit) arrived with %d, want cut to %d: the limit is not where the constant says", n, plain, limit)
		}
		limited, ok := got[fmt.Sprintf("limited%05d", n)]
		switch {
		case whole && limited != n:
			t.Errorf("with WithMaxMessage: a message of %d bytes arrived with %d", n, limited)
		case !whole && ok:
			t.Errorf("with WithMaxMessage: a message of %d bytes, refused by Write, arrived (%d bytes)", n, limited)
		}
	}
	t.Logf("rsyslog's defaults: %d and %d bytes arrive whole, %d and %d are cut to %d; WithMaxMessage(%d) refuses those",
		sizes[0], sizes[1], sizes[2], sizes[3], limit, limit)
}
