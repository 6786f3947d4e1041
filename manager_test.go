package conn_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"

	"github.com/seed44b27a20/conn"
)

// newFake returns a Manager dialing f, closed when the test ends.
func newFake(t *testing.T, f *fakeNet, opts ...conn.Option) *conn.Manager {
	t.Helper()
	m := conn.New("tcp", "fake:1", append([]conn.Option{conn.WithDialer(f.Dial)}, opts...)...)
	t.Cleanup(func() { m.Close() })
	return m
}

func TestBackoffScheduleGoesThroughAfterFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("refused (fake)")}
		after := &afterRecorder{}
		base, max := 100*time.Millisecond, time.Second
		m := newFake(t, f, conn.WithAfterFunc(after.After), conn.WithBackoff(base, max))
		time.Sleep(20 * time.Second)
		synctest.Wait()

		waits := after.Waits()
		if len(waits) < 10 {
			t.Fatalf("%d waits in 20s, want at least 10: %v", len(waits), waits)
		}
		nominal := base
		for i, w := range waits {
			if lo, hi := nominal/2, min(nominal+nominal/2, max); w < lo || w > hi {
				t.Errorf("wait %d: %v, want within [%v, %v]", i+1, w, lo, hi)
			}
			nominal = min(2*nominal, max)
		}
		st := m.Stats()
		if st.Dials != uint64(len(waits)) && st.Dials != uint64(len(waits)+1) {
			t.Errorf("%d dials for %d waits", st.Dials, len(waits))
		}
		if st.Dials != st.DialFailures || st.State != conn.Disconnected {
			t.Errorf("stats %+v, want every dial failed and Disconnected", st)
		}

		f.set(func(f *fakeNet) { f.dialErr = nil })
		time.Sleep(max)
		if m.Take() == nil {
			t.Fatal("no connection within the cap after the dialer recovered")
		}
		m.Close()
	})
}

// The seed's contract, as go-kit's own test checks it: after Put(err) no
// connection is handed out until the AfterFunc's channel fires.
func TestPutWaitsForAfterFuncBeforeRedial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tick := make(chan time.Time)
		f := &fakeNet{}
		m := newFake(t, f, conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }))
		if m.Take() == nil {
			t.Fatal("no first connection")
		}
		m.Put(errors.New("kill it"))
		synctest.Wait()
		for i := 0; i < 10; i++ {
			if c := m.Take(); c != nil {
				t.Fatalf("Take %d after Put: %v, want nil", i, c)
			}
		}
		if want, have := 1, f.Dials(); want != have {
			t.Fatalf("dials before the tick: %d, want %d", have, want)
		}
		tick <- time.Now()
		synctest.Wait()
		if m.Take() == nil || f.Dials() != 2 {
			t.Fatalf("after the tick: %d dials, Take %v", f.Dials(), m.Take())
		}
		if !f.Conn(0).closed.Load() {
			t.Error("the invalidated connection was not closed")
		}
		m.Close()
	})
}

func TestPutNilAndStaleErrorsKeepTheConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		m := newFake(t, f)
		c := m.Take()
		m.Put(nil)
		stale := &net.OpError{Op: "write", Net: "tcp",
			Source: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
			Addr:   fakeRemote, Err: errors.New("broken pipe")}
		m.Put(stale)
		if m.Take() != c {
			t.Fatal("Put(nil) or an error naming another connection replaced the connection")
		}
		ours := &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errors.New("broken pipe")}
		m.Put(ours)
		if m.Take() != nil {
			t.Fatal("an error naming the current connection did not invalidate it")
		}
		m.Close()
	})
}

func TestWriteTimesOutWhenPeerStopsReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu    sync.Mutex
			peers []net.Conn
		)
		dial := func(string, string) (net.Conn, error) {
			c, peer := net.Pipe() // nobody reads peer
			mu.Lock()
			peers = append(peers, peer)
			mu.Unlock()
			return c, nil
		}
		m := conn.New("pipe", "", conn.WithDialer(nil), conn.WithWriteTimeout(2*time.Second))
		m.Close()
		m = conn.NewManager(dial, "pipe", "", nil, nil)
		m.Close()
		m = conn.New("pipe", "", conn.WithWriteTimeout(2*time.Second), conn.WithBackoff(10*time.Millisecond, time.Second),
			conn.WithDialer(contextFree(dial)))
		defer func() {
			m.Close()
			mu.Lock()
			for _, p := range peers {
				p.Close()
			}
			mu.Unlock()
		}()
		start := time.Now()
		_, err := m.Write([]byte("stuck"))
		took := time.Since(start)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write: %v, want a timeout", err)
		}
		if took > 2*time.Second || took < 2*time.Second*7/8 {
			t.Errorf("Write failed after %v, want within [1.75s, 2s]", took)
		}
		if m.Take() != nil {
			t.Error("the stalled connection is still handed out")
		}
		time.Sleep(time.Second)
		if m.Take() == nil {
			t.Error("no new connection after the backoff")
		}
	})
}

func TestCloseInEveryState(t *testing.T) {
	cases := []struct {
		name  string
		setup func(f *fakeNet) []conn.Option
	}{
		{"connected", func(f *fakeNet) []conn.Option { return nil }},
		{"dialing", func(f *fakeNet) []conn.Option { f.hang = true; return nil }},
		{"backing off, AfterFunc never fires", func(f *fakeNet) []conn.Option {
			f.dialErr = errors.New("down")
			return []conn.Option{conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return nil })}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeNet{}
				m := newFake(t, f, tc.setup(f)...)
				m.Take()
				var wg sync.WaitGroup
				for range 4 {
					wg.Go(func() {
						for range 100 {
							m.Write([]byte("x"))
							m.Take()
							m.Put(errors.New("x"))
						}
					})
				}
				wg.Go(func() { m.Close() })
				m.Close()
				m.Close()
				wg.Wait()
				if c := m.Take(); c != nil {
					t.Errorf("Take after Close: %v", c)
				}
				if _, err := m.Write([]byte("x")); !errors.Is(err, conn.ErrClosed) {
					t.Errorf("Write after Close: %v, want ErrClosed", err)
				}
				m.Put(errors.New("after close"))
				if st := m.Stats(); st.State != conn.Closed {
					t.Errorf("state after Close: %v", st.State)
				}
				for i := range len(f.conns) {
					if !f.Conn(i).closed.Load() {
						t.Errorf("connection %d left open", i)
					}
				}
			})
		})
	}
}

func TestStateHookAndLogLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu     sync.Mutex
			events []conn.Event
			lines  int
		)
		hook := func(ev conn.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }
		logger := log.LoggerFunc(func(...any) error { mu.Lock(); lines++; mu.Unlock(); return nil })
		tick := make(chan time.Time)
		after := func(time.Duration) <-chan time.Time { return tick }
		f := &fakeNet{}
		m := newFake(t, f, conn.WithStateHook(hook), conn.WithLogger(logger), conn.WithAfterFunc(after))
		m.Take()
		f.set(func(f *fakeNet) { f.dialErr = errors.New("down") })
		m.Put(errors.New("lost"))
		for range 100 { // failed Writes are not logged
			m.Write([]byte("x"))
		}
		tick <- time.Now() // this redial fails
		synctest.Wait()
		f.set(func(f *fakeNet) { f.dialErr = nil })
		tick <- time.Now() // this one succeeds
		synctest.Wait()
		m.Close()

		want := []conn.State{conn.Connected, conn.Disconnected, conn.Disconnected, conn.Connected, conn.Closed}
		mu.Lock()
		defer mu.Unlock()
		if len(events) != len(want) {
			t.Fatalf("events %+v, want states %v", events, want)
		}
		for i, ev := range events {
			if ev.State != want[i] {
				t.Errorf("event %d: %v, want %v", i, ev.State, want[i])
			}
		}
		if ev := events[2]; ev.Attempt != 2 || ev.Err == nil || ev.Wait <= 0 {
			t.Errorf("dial failure event %+v, want attempt 2 with an error and a wait", ev)
		}
		if lines != len(events) {
			t.Errorf("%d log lines for %d state changes", lines, len(events))
		}
		if st := m.Stats(); st.Dials != 3 || st.DialFailures != 1 || st.Lost != 1 {
			t.Errorf("stats %+v, want 3 dials, 1 failure, 1 lost", st)
		}
	})
}

// Many goroutines that Put errors on one connection at once retire it once:
// one loss, and nothing closed twice.
func TestConcurrentPutsRetireOnce(t *testing.T) {
	f := &fakeNet{}
	tick := make(chan time.Time)
	losses := make(chan conn.Event, 1000)
	hook := func(ev conn.Event) {
		if ev.State == conn.Disconnected {
			losses <- ev
		}
	}
	m := newFake(t, f, conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }), conn.WithStateHook(hook))
	const rounds = 200
	for round := range rounds {
		if round > 0 {
			tick <- time.Now() // the backoff is over: the next dial
		}
		for m.Take() == nil {
			runtime.Gosched()
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { <-start; m.Put(errors.New("failed")) })
		}
		close(start)
		wg.Wait()
		recv(t, losses)
	}
	select {
	case ev := <-losses:
		t.Errorf("a loss more than one per round: %+v", ev)
	default:
	}
	if st := m.Stats(); st.Lost != rounds || f.Dials() != rounds {
		t.Errorf("%d losses, %d dials; want %d each", st.Lost, f.Dials(), rounds)
	}
}

// levels is a slog.Handler that records the level of each message.
type levels struct {
	mu  sync.Mutex
	got map[string]slog.Level
}

func (h *levels) Enabled(context.Context, slog.Level) bool { return true }
func (h *levels) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *levels) WithGroup(string) slog.Handler            { return h }
func (h *levels) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got[r.Message] = r.Level
	return nil
}

// WithSlogLogger logs connecting at Info, losing a connection and failed
// dials at Warn, and recovered panics of user code at Error.
func TestSlogLevels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &levels{got: map[string]slog.Level{}}
		f := &fakeNet{}
		m := newFake(t, f, conn.WithSlogLogger(slog.New(h)), conn.WithStateHook(func(conn.Event) { panic("hook") }),
			conn.WithBackoff(time.Second, time.Second))
		m.Take()
		f.set(func(f *fakeNet) { f.dialErr = errors.New("down") })
		m.Put(errors.New("lost"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		m.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for msg, want := range map[string]slog.Level{
			"connected":       slog.LevelInfo,
			"connection lost": slog.LevelWarn,
			"dial failed":     slog.LevelWarn,
			"state hook panicked; it is called no more": slog.LevelError,
		} {
			if have, ok := h.got[msg]; !ok || have != want {
				t.Errorf("%q logged at %v (logged: %v), want %v", msg, have, ok, want)
			}
		}
	})
}
