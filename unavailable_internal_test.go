package conn

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// nullConn accepts every write and has no file descriptor.
type nullConn struct{ net.Conn }

func (nullConn) Write(b []byte) (int, error)      { return len(b), nil }
func (nullConn) Close() error                     { return nil }
func (nullConn) SetWriteDeadline(time.Time) error { return nil }

func newNullManager(opts ...Option) *Manager {
	return New("tcp", "null:1", append([]Option{WithWriteTimeout(0), WithAfterFunc(func(time.Duration) <-chan time.Time { return nil }),
		WithDialer(func(context.Context, string, string) (net.Conn, error) { return nullConn{}, nil })}, opts...)...)
}

// Writes that succeed allocate nothing; nor do refused BatchWriter Writes
// once a drop report is due, nor state changes nobody listens to.
func TestHotAndFailurePathsDoNotAllocate(t *testing.T) {
	m := newNullManager()
	defer m.Close()
	b := []byte("hello")
	m.Write(b)
	if a := testing.AllocsPerRun(1000, func() { m.Write(b) }); a != 0 {
		t.Errorf("Manager.Write allocates %.1f times", a)
	}
	w := NewBatchWriter(m)
	defer w.Close()
	if a := testing.AllocsPerRun(1000, func() { w.Write(b) }); a != 0 {
		t.Errorf("BatchWriter.Write allocates %.1f times", a)
	}

	full := NewBatchWriter(m, WithBufferSize(1), WithDropReportInterval(time.Hour))
	defer full.Close()
	full.Write(b) // the first report, at once
	for full.drops.due.Load() {
		time.Sleep(time.Millisecond)
	}
	full.Write(b) // schedules the next, an hour away
	if a := testing.AllocsPerRun(1000, func() { full.Write(b) }); a != 0 {
		t.Errorf("a refused BatchWriter.Write allocates %.1f times", a)
	}

	if a := testing.AllocsPerRun(100, func() { m.enter("connected", Event{State: Connected}) }); a != 0 {
		t.Errorf("a state change nobody listens to allocates %.1f times", a)
	}
	// The cause is kept for Write's error: one allocation, none for the
	// go-kit constructors, whose Write returns the bare value.
	ev := Event{State: Disconnected, Err: errors.New("down"), Attempt: 1}
	if a := testing.AllocsPerRun(100, func() { m.enter("dial failed", ev) }); a != 1 {
		t.Errorf("a loss nobody listens to allocates %.1f times, want 1 (the cause)", a)
	}
	g := newNullManager(bareErrors)
	defer g.Close()
	if a := testing.AllocsPerRun(100, func() { g.enter("dial failed", ev) }); a != 0 {
		t.Errorf("a loss nobody listens to allocates %.1f times with go-kit's errors", a)
	}
}

// slowErr's Error blocks once until released: retire calls it (through
// sane) after it has marked the link retired and before it records why.
type slowErr struct {
	entered, release chan struct{}
	once             *sync.Once
}

func (e slowErr) Error() string {
	e.once.Do(func() { close(e.entered); <-e.release })
	return "slow"
}

// A Write whose liveness check fails while another goroutine retires the
// link returns the cause that goroutine records, not a nil one whose
// Error panics (found by review: the cause was read before it was set).
func TestCheckedFailureWaitsForTheCause(t *testing.T) {
	m := newNullManager()
	defer m.Close()
	m.Write([]byte("x"))
	l := m.cur.Load()
	e := slowErr{entered: make(chan struct{}), release: make(chan struct{}), once: new(sync.Once)}
	retired := make(chan struct{})
	go func() { m.retire(l, e); close(retired) }() // as Put or a failed Write would
	<-e.entered                                    // retired is set; the cause is not
	errc := make(chan error, 1)
	go func() {
		_, err := m.failed(l, nil, 0, errPeerClosed, false, true)
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("the checked Write returned %v before the cause was recorded", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(e.release)
	<-retired
	var ue *UnavailableError
	if err := <-errc; !errors.As(err, &ue) || ue.Cause != error(e) {
		t.Errorf("checked Write: %v, want UnavailableError caused by the retiring error", err)
	}
}
