package conn

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// rusageThread is Linux's RUSAGE_THREAD: the calling thread's usage.
const rusageThread = 1

// threadCPU returns the CPU time the calling thread has used.
func threadCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		t.Error(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// An append whose own write of the full buffer fails (the file is closed)
// waits for room, WithWaitWhenFull's time, asleep: the room its write made
// went with the failure, and retrying at once would spin a CPU for the
// whole wait.
func TestSpoolAppendWaitsAsleepAfterItsOwnWriteFails(t *testing.T) {
	const wait = 300 * time.Millisecond
	w, s := openBareSpool(t, 4<<20, WithWaitWhenFull(wait))
	appendPayload(t, w, s.bufMax-recHeaderLen)
	s.wmu.Lock()
	s.failing = true // already logged (the BatchWriter has no Manager to log with)
	s.wf.Close()
	s.wmu.Unlock()
	type result struct {
		err       error
		cpu, took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // the append's CPU is its thread's
		defer runtime.UnlockOSThread()
		cpu, start := threadCPU(t), time.Now()
		err := w.spoolAppend(nil)
		done <- result{err, threadCPU(t) - cpu, time.Since(start)}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the append still waits after 20s")
	}
	if r.err != ErrSpoolFull || r.took < wait {
		t.Fatalf("append: %v after %v; want ErrSpoolFull after %v", r.err, r.took, wait)
	}
	if r.cpu > wait/3 {
		t.Errorf("the append used %v of CPU in its %v wait: it retried the failing write instead of sleeping", r.cpu, r.took)
	}
}
