package conn_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed44b27a20/conn"
)

// instantAfter fires the first n waits at once, later ones after an hour:
// the Manager fails dials back to back, then stops.
func instantAfter(n int) conn.AfterFunc {
	var calls atomic.Int64
	return func(d time.Duration) <-chan time.Time {
		if calls.Add(1) > int64(n) {
			return time.After(time.Hour)
		}
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
}

// A state hook that panics while the note queue is full: the delivering
// goroutine logs the panic itself instead of waiting for room in the queue
// that only it can make (found by review: Close never returned).
func TestPanickingHookWithAFullNoteQueueDoesNotDeadlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("down")}
		release := make(chan struct{})
		m := conn.New("tcp", "fake:1", conn.WithDialer(f.Dial), conn.WithAfterFunc(instantAfter(200)),
			conn.WithStateHook(func(conn.Event) { <-release; panic("hook bug") }))
		synctest.Wait() // the hook holds the first note; 64 more queued; the Manager waits for room
		// The hook holds the first failure's note, 64 wait, and the
		// Manager waits to queue the 66th failure's.
		if d := f.Dials(); d != 66 {
			t.Errorf("%d dials while the hook held up the notes, want 66: the queue holds 64", d)
		}
		close(release)
		m.Close() // synctest reports a deadlock if it does not return
	})
}

// Hook calls come in order, one at a time, whatever the logger and the
// hook take; the Manager's goroutine does not wait for them until 64 are
// queued.
func TestHookCallsComeInOrderOneAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("down")}
		var (
			mu       sync.Mutex
			attempts []int
			inside   atomic.Int32
		)
		m := conn.New("tcp", "fake:1", conn.WithDialer(f.Dial), conn.WithAfterFunc(instantAfter(30)),
			conn.WithStateHook(func(ev conn.Event) {
				if inside.Add(1) != 1 {
					t.Error("two hook calls at once")
				}
				time.Sleep(time.Millisecond)
				mu.Lock()
				if ev.State == conn.Closed {
					ev.Attempt = -1
				}
				attempts = append(attempts, ev.Attempt)
				mu.Unlock()
				inside.Add(-1)
			}))
		synctest.Wait()
		if d := f.Dials(); d != 31 {
			t.Errorf("%d dials before the hook caught up, want all 31 (the hook holds up no dial)", d)
		}
		time.Sleep(time.Second)
		m.Close()
		mu.Lock()
		defer mu.Unlock()
		if len(attempts) != 32 || attempts[31] != -1 {
			t.Fatalf("hook calls before Close returned: %v, want 31 failed dials, then Closed (-1)", attempts)
		}
		for i, a := range attempts[:31] {
			if a != i+1 {
				t.Fatalf("hook calls out of order: %v", attempts)
			}
		}
	})
}
