package conn_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"

	"github.com/seed44b27a20/conn"
)

func TestBadInput(t *testing.T) {
	typedNil := func(string, string) (net.Conn, error) { return (*net.TCPConn)(nil), nil }
	withErr := &fakeConn{}
	cases := []struct {
		name string
		m    func() *conn.Manager
	}{
		{"unknown network", func() *conn.Manager { return conn.NewDefaultManager("carrier-pigeon", "a:1", nil) }},
		{"address without port", func() *conn.Manager { return conn.NewDefaultManager("tcp", "127.0.0.1", nil) }},
		{"empty address", func() *conn.Manager { return conn.New("unix", "") }},
		{"nil dialer, after and logger", func() *conn.Manager { return conn.NewManager(nil, "tcp", "127.0.0.1:bad", nil, nil) }},
		{"dialer returns nil, nil", func() *conn.Manager {
			return conn.NewManager(func(string, string) (net.Conn, error) { return nil, nil }, "tcp", "x:1", nil, nil)
		}},
		{"dialer returns a typed nil", func() *conn.Manager { return conn.NewManager(typedNil, "tcp", "x:1", nil, nil) }},
		{"dialer returns a conn and an error", func() *conn.Manager {
			return conn.NewManager(func(string, string) (net.Conn, error) { return withErr, errors.New("half") }, "tcp", "x:1", nil, nil)
		}},
		{"invalid options", func() *conn.Manager {
			return conn.New("tcp", "127.0.0.1", conn.WithBackoff(-1, -2), conn.WithDialTimeout(-1), conn.WithWriteTimeout(-1), nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m()
			defer m.Close()
			if c := m.Take(); c != nil {
				t.Errorf("Take: %v, want nil", c)
			}
			if _, err := m.Write([]byte("x")); !errors.Is(err, conn.ErrConnectionUnavailable) {
				t.Errorf("Write: %v, want ErrConnectionUnavailable", err)
			}
			if st := m.Stats(); st.DialFailures == 0 || st.LastError == nil {
				t.Errorf("stats %+v, want a failed dial and its error", st)
			}
		})
	}
	if !withErr.closed.Load() {
		t.Error("a connection returned with an error was not closed")
	}
}

// Invalid backoffs keep the default schedule: a zero or negative base, or
// a max below the base.
func TestInvalidBackoffKeepsTheDefault(t *testing.T) {
	for _, b := range [][2]time.Duration{{0, time.Second}, {-time.Second, time.Second}, {time.Second, time.Second - 1}} {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeNet{dialErr: errors.New("down")}
			after := &afterRecorder{}
			m := newFake(t, f, conn.WithAfterFunc(after.After), conn.WithBackoff(b[0], b[1]))
			m.Take()
			synctest.Wait()
			if w := after.Waits(); len(w) != 1 || w[0] < conn.DefaultBackoffBase/2 || w[0] > conn.DefaultBackoffBase*3/2 {
				t.Errorf("WithBackoff(%v, %v): waits %v, want the default first wait, %v ± 50%%", b[0], b[1], w, conn.DefaultBackoffBase)
			}
			m.Close()
		})
	}
}

// Without WithWriteTimeout a stalled Write fails after DefaultWriteTimeout
// (30 s), at the latest.
func TestDefaultWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stallNet{}
		m := conn.New("stall", "", conn.WithDialer(contextFree(s.Dial)))
		defer m.Close()
		start := time.Now()
		if _, err := m.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Write: %v, want a timeout", err)
		}
		if took := time.Since(start); took != conn.DefaultWriteTimeout {
			t.Errorf("a stalled Write failed after %v, want DefaultWriteTimeout (%v)", took, conn.DefaultWriteTimeout)
		}
		if conn.DefaultWriteTimeout != 30*time.Second {
			t.Errorf("DefaultWriteTimeout = %v, documented as 30 s", conn.DefaultWriteTimeout)
		}
	})
}

// Every duration option accepts the largest value and behaves as "very
// long", never overflowing into the past.
func TestDurationOptionsSaturate(t *testing.T) {
	const huge = time.Duration(math.MaxInt64)
	cases := []struct {
		name string
		opts []conn.Option
	}{
		{"write timeout", []conn.Option{conn.WithWriteTimeout(huge)}},
		{"dial timeout", []conn.Option{conn.WithDialTimeout(huge)}},
		{"backoff", []conn.Option{conn.WithBackoff(huge, huge)}},
		{"backoff max", []conn.Option{conn.WithBackoff(time.Nanosecond, huge)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &stallNet{}
				m := conn.New("stall", "", append(tc.opts, conn.WithDialer(contextFree(s.Dial)))...)
				defer m.Close()
				if m.Take() == nil {
					t.Fatal("no connection")
				}
				s.Conn(0).flow(true)
				for i := range 3 {
					time.Sleep(time.Hour)
					if _, err := m.Write([]byte("x")); err != nil {
						t.Fatalf("Write %d: %v", i, err)
					}
				}
				w := conn.NewBatchWriter(m, conn.WithWaitWhenFull(huge), conn.WithCloseTimeout(huge))
				if _, err := w.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
	t.Run("backoff wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			after := &afterRecorder{}
			f := &fakeNet{dialErr: errors.New("down")}
			m := newFake(t, f, conn.WithBackoff(huge/2, huge), conn.WithAfterFunc(after.After))
			m.Take()
			synctest.Wait()
			if w := after.Waits(); len(w) != 1 || w[0] < huge/4 {
				t.Errorf("waits %v, want one of at least %v", w, huge/4)
			}
			m.Close()
		})
	})
}

// errPanics is an error whose methods panic, as a buggy error type might.
type errPanics struct{}

func (errPanics) Error() string            { panic("Error") }
func (errPanics) Unwrap() error            { panic("Unwrap") }
func (errPanics) Is(error) bool            { panic("Is") }
func (errPanics) As(any) bool              { panic("As") }
func (errPanics) Timeout() bool            { panic("Timeout") }
func (errPanics) Temporary() bool          { panic("Temporary") }
func (*errNilRecv) Error() string          { panic("nil receiver") }
func (e *errNilRecv) Unwrap() error        { return e.err }
func (e *errNilRecv) Is(target error) bool { return e.err == target }

type errNilRecv struct{ err error }

// Put accepts any error value without panicking, here or later in the
// Manager's goroutine, which logs the error and hands it to the hook.
func TestPutNeverPanics(t *testing.T) {
	errs := []error{
		(*net.OpError)(nil),
		&net.OpError{},
		&net.OpError{Op: "write", Err: (*net.OpError)(nil)},
		errPanics{},
		(*errNilRecv)(nil),
		&errNilRecv{},
		&net.OpError{Op: "write", Net: "tcp", Err: errPanics{}},
	}
	for _, err := range errs {
		synctest.Test(t, func(t *testing.T) {
			var events []conn.Event
			hook := func(ev conn.Event) {
				_ = ev.Err.Error() // the hook may format the error, as a logger does
				events = append(events, ev)
			}
			f := &fakeNet{}
			tick := make(chan time.Time)
			m := newFake(t, f, conn.WithLogger(log.NewLogfmtLogger(io.Discard)), conn.WithStateHook(nilSafe(hook)),
				conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }))
			if m.Take() == nil {
				t.Fatal("no connection")
			}
			m.Put(err)
			synctest.Wait()
			if c := m.Take(); c != nil {
				t.Errorf("Put(%T): the connection was kept; an error that names no other connection is about this one", err)
			}
			st := m.Stats()
			if st.LastError == nil || st.LastError.Error() == "" {
				t.Errorf("Put(%T): Stats().LastError = %v, want an error that can be printed", err, st.LastError)
			}
			m.Close()
		})
	}
}

// nilSafe wraps a hook so that it skips events without an error.
func nilSafe(hook func(conn.Event)) func(conn.Event) {
	return func(ev conn.Event) {
		if ev.Err != nil {
			hook(ev)
		}
	}
}

// User code that panics in the Manager's goroutine — a Dialer, the state
// hook, the logger, the AfterFunc — is recovered: the process lives on, a
// panicking dial counts as a failed one, and a panicking hook or logger is
// disabled.
func TestPanickingUserCodeIsRecovered(t *testing.T) {
	t.Run("dialer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var panics atomic.Bool
			panics.Store(true)
			f := &fakeNet{}
			dial := func(ctx context.Context, network, address string) (net.Conn, error) {
				if panics.Load() {
					panic("dialer bug")
				}
				return f.Dial(ctx, network, address)
			}
			var lines []string
			var mu sync.Mutex
			logger := log.LoggerFunc(func(kv ...any) error {
				mu.Lock()
				defer mu.Unlock()
				var b strings.Builder
				log.NewLogfmtLogger(&b).Log(kv...)
				lines = append(lines, b.String())
				return nil
			})
			m := conn.New("tcp", "x:1", conn.WithDialer(dial), conn.WithLogger(logger), conn.WithBackoff(time.Second, time.Second))
			defer m.Close()
			if _, err := m.Write([]byte("x")); !errors.Is(err, conn.ErrConnectionUnavailable) {
				t.Fatalf("Write while the dialer panics: %v", err)
			}
			st := m.Stats()
			if st.DialFailures != 1 || st.LastError == nil || !strings.Contains(st.LastError.Error(), "dialer bug") {
				t.Errorf("stats %+v, want one failed dial whose error names the panic", st)
			}
			synctest.Wait() // the log lines are delivered by a goroutine of their own
			mu.Lock()
			logged := strings.Join(lines, "")
			mu.Unlock()
			if !strings.Contains(logged, "panic") || !strings.Contains(logged, "dialer bug") {
				t.Errorf("log %q does not report the panic", logged)
			}
			panics.Store(false)
			time.Sleep(2 * time.Second)
			if _, err := m.Write([]byte("x")); err != nil {
				t.Errorf("Write once the dialer works: %v", err)
			}
		})
	})
	t.Run("go-kit Dialer", func(t *testing.T) {
		dial := func(string, string) (net.Conn, error) { panic("dialer bug") }
		m := conn.NewManager(dial, "tcp", "x:1", nil, nil)
		defer m.Close()
		if c := m.Take(); c != nil {
			t.Fatal("a connection from a panicking dialer")
		}
		if st := m.Stats(); st.DialFailures == 0 || !strings.Contains(st.LastError.Error(), "dialer bug") {
			t.Errorf("stats %+v, want a failed dial whose error names the panic", st)
		}
	})
	t.Run("hook, logger and AfterFunc", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var hooks, logs, afters atomic.Int32
			hook := func(conn.Event) { hooks.Add(1); panic("hook bug") }
			logger := log.LoggerFunc(func(...any) error { logs.Add(1); panic("logger bug") })
			after := func(d time.Duration) <-chan time.Time { afters.Add(1); panic("after bug") }
			f := &fakeNet{dialErr: errors.New("down")}
			m := newFake(t, f, conn.WithStateHook(hook), conn.WithLogger(logger), conn.WithAfterFunc(after),
				conn.WithBackoff(time.Second, time.Second))
			m.Take()
			time.Sleep(10 * time.Second)
			synctest.Wait()
			if n := f.Dials(); n < 5 {
				t.Errorf("%d dials in 10 s with a panicking AfterFunc, want the schedule kept (≥ 5)", n)
			}
			if hooks.Load() != 1 || logs.Load() != 1 {
				t.Errorf("hook called %d times, logger %d times; want each once, then disabled", hooks.Load(), logs.Load())
			}
			f.set(func(f *fakeNet) { f.dialErr = nil })
			time.Sleep(2 * time.Second)
			if _, err := m.Write([]byte("x")); err != nil {
				t.Errorf("Write once the dialer works: %v", err)
			}
			m.Close()
		})
	})
	t.Run("connection methods under a BatchWriter", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var panics atomic.Bool
			panics.Store(true)
			f := &fakeNet{}
			dial := func(ctx context.Context, network, address string) (net.Conn, error) {
				c, err := f.Dial(ctx, network, address)
				if err != nil || !panics.Load() {
					return c, err
				}
				return panicConn{c}, nil
			}
			m := conn.New("tcp", "x:1", conn.WithDialer(dial), conn.WithBackoff(time.Second, time.Second))
			w := conn.NewBatchWriter(m)
			w.Write([]byte("line\n"))
			time.Sleep(500 * time.Millisecond)
			panics.Store(false)
			if err := w.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st := w.Stats(); st.Written != 1 {
				t.Errorf("stats %+v, want the line written once a connection works", st)
			}
			if st := m.Stats(); st.Lost == 0 || !strings.Contains(st.LastError.Error(), "panic") {
				t.Errorf("manager stats %+v, want the panicking connection lost with its panic as the cause", st)
			}
			w.Close()
			m.Close()
		})
	})
}

// panicConn is a connection whose Write and Close panic.
type panicConn struct{ net.Conn }

func (panicConn) Write([]byte) (int, error) { panic("Write bug") }
func (c panicConn) Close() error            { c.Conn.Close(); panic("Close bug") }

// cyclicError wraps itself: errors.Is and errors.As on it never return.
type cyclicError struct{}

func (e *cyclicError) Error() string { return "cyclic" }
func (e *cyclicError) Unwrap() error { return e }

func TestPutReturnsForAnErrorThatWrapsItself(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newFake(t, &fakeNet{})
		if m.Take() == nil {
			t.Fatal("no connection")
		}
		m.Put(&cyclicError{}) // would spin forever in errors.As
		synctest.Wait()
		st := m.Stats()
		if st.LastError == nil || !strings.Contains(st.LastError.Error(), "does not end") {
			t.Errorf("last error %v, want a stand-in saying the chain does not end", st.LastError)
		}
		m.Close()
	})
}

// deadlinePanicConn is a connection whose SetWriteDeadline panics.
type deadlinePanicConn struct{ *fakeConn }

func (deadlinePanicConn) SetWriteDeadline(time.Time) error { panic("SetWriteDeadline not implemented") }

// Without a write timeout the BatchWriter's Close is the only caller of
// SetWriteDeadline (to interrupt a Write that holds it up): a connection
// whose SetWriteDeadline panics is lost, and Close returns within its
// timeout.
func TestBatchWriterCloseSurvivesAPanickingSetWriteDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		c := deadlinePanicConn{&fakeConn{gate: gate}}
		m := conn.New("x", "", conn.WithWriteTimeout(0),
			conn.WithDialer(contextFree(func(string, string) (net.Conn, error) { return c, nil })))
		defer m.Close()
		w := conn.NewBatchWriter(m, conn.WithCloseTimeout(10*time.Millisecond))
		if _, err := w.Write([]byte("held up\n")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the background writer is blocked in the connection's Write
		closed := make(chan error, 1)
		go func() { closed <- w.Close() }()
		time.Sleep(20 * time.Millisecond)
		close(gate)
		if err := <-closed; err != nil && !errors.Is(err, conn.ErrUnflushed) {
			t.Errorf("Close: %v", err)
		}
		if st := m.Stats(); st.Lost != 1 || st.LastError == nil || !strings.Contains(st.LastError.Error(), "SetWriteDeadline not implemented") {
			t.Errorf("stats %+v, want the connection lost to the panic", st)
		}
	})
}
