package conn_test

import (
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

// ackedSpool opens a Manager to s and a BatchWriter on it with
// acknowledged delivery and a spool in dir, with opts besides; the
// Manager is closed when the test ends.
func ackedSpool(t *testing.T, s *ackServer, dir string, opts ...conn.BatchOption) (*conn.Manager, *conn.BatchWriter) {
	t.Helper()
	m := conn.New("tcp", s.Addr(), conn.WithBackoff(time.Millisecond, 20*time.Millisecond), conn.WithLogger(log.NewNopLogger()))
	t.Cleanup(func() { m.Close() })
	w, err := conn.OpenBatchWriter(m, append([]conn.BatchOption{conn.WithAcks(lineAcks{}), conn.WithSpool(dir, 0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m, w
}

// With acknowledged delivery a spool keeps each message until the peer
// acknowledges it: what a hung collector took without answering stays on
// disk, and the next BatchWriter on the directory sends it again.
func TestSpoolKeepsWhatThePeerDidNotAcknowledge(t *testing.T) {
	dir := t.TempDir()
	s := newAckServer(t)
	s.stall()
	m, w := ackedSpool(t, s, dir, conn.WithDurableSpool(0), conn.WithCloseTimeout(200*time.Millisecond), conn.WithWindow(10000, 0))
	const n = 3000
	writeNumbered(t, w, 0, n)
	s.awaitGot(n, 20*time.Second)
	w.Close() // acknowledgements withheld: nothing may leave the spool
	st := w.Stats()
	if st.Left != n || st.Acked != 0 || st.Dropped != 0 {
		t.Fatalf("after Close with no acknowledgement: Left %d, Acked %d, Dropped %d; want %d left", st.Left, st.Acked, st.Dropped, n)
	}
	s.release()
	m.Close()

	// The next program on the directory.
	_, w2 := ackedSpool(t, s, dir, conn.WithDurableSpool(0))
	writeNumbered(t, w2, n, n+10)
	flushWithin(t, w2, 20*time.Second)
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	dups := checkAllOnce(t, s.Got(), n+10)
	st = w2.Stats()
	if st.Spool.Recovered != n || st.Acked != n+10 || st.Spool.Bytes != 0 {
		t.Errorf("second writer: recovered %d, acked %d, spool bytes %d", st.Spool.Recovered, st.Acked, st.Spool.Bytes)
	}
	if dups > n {
		t.Errorf("%d duplicates, want at most the %d unacknowledged", dups, n)
	}
}

func TestSpoolWithAcksDeliversEverythingAcrossResets(t *testing.T) {
	s := newAckServer(t)
	m := conn.New("tcp", s.Addr(), conn.WithBackoff(time.Millisecond, 20*time.Millisecond), conn.WithLogger(log.NewNopLogger()))
	defer m.Close()
	w, err := conn.OpenBatchWriter(m, conn.WithAcks(lineAcks{}), conn.WithSpool(t.TempDir(), 0), conn.WithBufferSize(16<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 20000
	for i := 0; i < n; i += 2000 {
		writeNumbered(t, w, i, i+2000)
		s.resetAll()
	}
	flushWithin(t, w, 30*time.Second)
	dups := checkAllOnce(t, s.Got(), n)
	st := w.Stats()
	if st.Acked != n || st.Spool.Spooled == 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	t.Logf("%d duplicates, %d messages through the spool", dups, st.Spool.Spooled)
}
