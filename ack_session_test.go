package conn_test

// Sessions of acknowledged delivery, one per connection: handshakes refused,
// sessions lost or never acknowledging, peers and protocols that misbehave,
// and the datagram networks that cannot carry one.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

// A peer that never answers the handshake is left after the ack timeout,
// and one that refuses it is retried with backoff; neither blocks Close.
func TestAcksHandshakeRefusedThenAccepted(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.greeting = "NO\n" })
	_, w := newAckWriter(t, s)
	writeNumbered(t, w, 0, 5)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var opens int
		s.set(func(s *ackServer) { opens = s.opens })
		if opens >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d opens within 10s: a refused handshake is not retried", opens)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.set(func(s *ackServer) { s.greeting = "OK\n" })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	checkAllOnce(t, s.Got(), 5)
}

func TestAcksRefuseDatagramNetworks(t *testing.T) {
	m := conn.New("udp", "127.0.0.1:9")
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}))
	_, err := w.Write([]byte("x"))
	if err == nil || err.Error() != `conn: acknowledged delivery needs a stream network, not "udp"` {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := w.Stats(); st.Rejected != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// An idle session whose peer closes it is not replaced until there is
// something to send; then the message goes on a new one.
func TestAcksIdleSessionLostThenWrite(t *testing.T) {
	s := newAckServer(t)
	_, w := newAckWriter(t, s)
	writeNumbered(t, w, 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	s.resetAll()
	time.Sleep(50 * time.Millisecond) // let the reset arrive: what is tested is a Write after it
	writeNumbered(t, w, 1, 2)
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	checkAllOnce(t, s.Got(), 2)
	s.set(func(s *ackServer) {
		if s.opens != 2 {
			t.Errorf("%d sessions, want 2", s.opens)
		}
	})
}

// A peer that accepts the handshake and then drops every connection
// before acknowledging anything is redialed on the backoff schedule, not
// in a loop.
func TestAcksSessionsThatNeverAcknowledgeBackOff(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.resetAfterHello = 20 * time.Millisecond })
	m := conn.New("tcp", s.Addr(), conn.WithBackoff(100*time.Millisecond, time.Second), conn.WithLogger(log.NewNopLogger()))
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}), conn.WithCloseTimeout(100*time.Millisecond))
	defer w.Close()
	writeNumbered(t, w, 0, 1)
	time.Sleep(time.Second)
	var opens int
	s.set(func(s *ackServer) { opens = s.opens })
	if opens > 8 {
		t.Fatalf("%d sessions in 1s with a 100ms backoff: redialed without backoff", opens)
	}
}

// A peer that acknowledges what was never sent is a broken peer: the
// connection is left, and nothing is taken as acknowledged.
func TestAcksBeyondWhatWasSent(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.ackAhead = 1000 })
	_, w := newAckWriter(t, s, conn.WithCloseTimeout(300*time.Millisecond))
	writeNumbered(t, w, 0, 5)
	s.awaitOpens(t, 2, 10*time.Second)
	if st := w.Stats(); st.Acked != 0 {
		t.Fatalf("Acked %d: acknowledgements beyond what was sent were taken", st.Acked)
	}
	s.set(func(s *ackServer) { s.ackAhead = 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if st := w.Stats(); st.Acked != 5 {
		t.Fatalf("Acked %d, want 5", st.Acked)
	}
}

// An acknowledgement one beyond what was sent is a broken peer too.
func TestAcksOneBeyondWhatWasSent(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.ackAhead = 1 })
	_, w := newAckWriter(t, s, conn.WithCloseTimeout(100*time.Millisecond))
	writeNumbered(t, w, 0, 1)
	s.awaitOpens(t, 2, 10*time.Second)
}

// A protocol whose code panics costs its connection, never the program;
// the messages wait, and Close reports them.
func TestAcksProtocolPanics(t *testing.T) {
	for _, where := range []string{"Open", "AppendBatch", "ReadAck"} {
		t.Run(where, func(t *testing.T) {
			s := newAckServer(t)
			_, w := newAckWriterWith(t, s, lineAcks{panicIn: where}, conn.WithCloseTimeout(100*time.Millisecond))
			writeNumbered(t, w, 0, 3)
			s.awaitOpens(t, 2, 10*time.Second)
			if err := w.Close(); !errors.Is(err, conn.ErrUnflushed) {
				t.Fatalf("Close: %v", err)
			}
		})
	}
	t.Run("AppendClose", func(t *testing.T) {
		s := newAckServer(t)
		_, w := newAckWriterWith(t, s, lineAcks{panicIn: "AppendClose"})
		writeNumbered(t, w, 0, 3)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := w.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("Close: %v: everything was acknowledged", err)
		}
	})
}

// openFailsTwice fails its first handshake with errFirstOpen and returns no
// session, and no error, from its second: the writer logs each failure as
// it is and opens a session on the third connection.
type openFailsTwice struct {
	lineAcks
	opens *atomic.Int32
}

var errFirstOpen = errors.New("first handshake fails")

func (p openFailsTwice) Open(rw io.ReadWriter) (conn.AckSession, error) {
	switch p.opens.Add(1) {
	case 1:
		return nil, errFirstOpen
	case 2:
		return nil, nil
	}
	return p.lineAcks.Open(rw)
}

// noteValues keeps the value of one key in the Manager's log lines with
// one message.
type noteValues struct {
	msg, key string
	mu       sync.Mutex
	vals     []string
	changed  chan struct{} // closed and replaced at each value kept
}

func newNoteValues(msg, key string) *noteValues {
	return &noteValues{msg: msg, key: key, changed: make(chan struct{})}
}

func (v *noteValues) Log(kv ...any) error {
	var msg, val any
	for i := 0; i+1 < len(kv); i += 2 {
		switch kv[i] {
		case "msg":
			msg = kv[i+1]
		case v.key:
			val = kv[i+1]
		}
	}
	if msg != v.msg {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.vals = append(v.vals, fmt.Sprint(val))
	close(v.changed)
	v.changed = make(chan struct{})
	return nil
}

// await waits until n values were kept (the log is written by the
// Manager's goroutine) and returns them.
func (v *noteValues) await(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		v.mu.Lock()
		vals, changed := slices.Clone(v.vals), v.changed
		v.mu.Unlock()
		if len(vals) >= n {
			return vals
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%q logged with %s %q within 10s, want %d of them", v.msg, v.key, vals, n)
		}
	}
}

func TestAcksHandshakeFailuresLoggedAsTheyAre(t *testing.T) {
	s := newAckServer(t)
	notes := newNoteValues("acknowledged session not opened", "err")
	m := conn.New("tcp", s.Addr(), conn.WithBackoff(time.Millisecond, 20*time.Millisecond), conn.WithLogger(notes))
	w := conn.NewBatchWriter(m, conn.WithAcks(openFailsTwice{opens: new(atomic.Int32)}))
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	writeNumbered(t, w, 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	checkAllOnce(t, s.Got(), 3)
	if errs, want := notes.await(t, 2), []string{errFirstOpen.Error(), "conn: AckProtocol.Open returned no session"}; !slices.Equal(errs, want) {
		t.Fatalf("handshake failures logged %q, want %q", errs, want)
	}
}
