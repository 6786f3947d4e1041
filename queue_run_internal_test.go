package conn

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"
)

// A run of messages put with one claim takes consecutive places, reads
// back whole and in order, and counts as its messages.
func TestQueuePutsARunWithOneClaim(t *testing.T) {
	q, head := newQueue(1<<20, 256)
	if !q.putOK([]byte("first")) {
		t.Fatal("put failed")
	}
	run := [][]byte{[]byte("a"), []byte("bb"), []byte("ccc")}
	at, n, ok := q.putRun(run, 6)
	if !ok || n != 3 || at != (place{seq: 1, bytes: 5}) {
		t.Fatalf("putRun: %+v, %d, %v; want {1 5}, 3, true", at, n, ok)
	}
	if got := consume(t, head, 0, 0); !bytes.Equal(bytes.Join(got, []byte("|")), []byte("first|a|bb|ccc")) {
		t.Errorf("read back %q", got)
	}
	if c, b := q.accepted(); c != 4 || b != 11 {
		t.Errorf("accepted %d messages, %d bytes; want 4, 11", c, b)
	}
}

// A run whose claim is the first to miss the active segment seals it and
// begins the next with its first message only; the rest is put again.
func TestQueueRunThatMissesPutsItsFirstMessageInTheNextSegment(t *testing.T) {
	q, head := newQueue(1<<20, 64)
	if !q.putOK(make([]byte, 20)) { // 28 of 64
		t.Fatal("put failed")
	}
	run := [][]byte{bytes.Repeat([]byte("x"), 10), bytes.Repeat([]byte("y"), 10)} // 36 more: 64 fits
	if _, n, ok := q.putRun(run, 20); !ok || n != 2 || q.active.Load() != head {
		t.Fatalf("a run that fits exactly: %d put, ok %v, same segment %v", n, ok, q.active.Load() == head)
	}
	run = [][]byte{[]byte("p"), []byte("q")}
	at, n, ok := q.putRun(run, 2)
	if !ok || n != 1 || at != (place{seq: 3, bytes: 40}) {
		t.Fatalf("a run that misses: %+v, %d, %v; want {3 40}, 1, true", at, n, ok)
	}
	next := q.active.Load()
	if next == head || head.next.Load() != next {
		t.Fatal("the run's miss did not seal the segment")
	}
	at, n, ok = q.putRun(run[1:], 1)
	if !ok || n != 1 || at != (place{seq: 4, bytes: 41}) {
		t.Fatalf("the rest: %+v, %d, %v; want {4 41}, 1, true", at, n, ok)
	}
	if got := consume(t, next, 0, 0); !bytes.Equal(bytes.Join(got, nil), []byte("pq")) {
		t.Errorf("the next segment holds %q, want p, q", got)
	}
	q.close()
	if _, n, ok := q.putRun(run, 2); ok || n != 0 {
		t.Errorf("a run put after close: %d put, ok %v", n, ok)
	}
}

// Runs and single messages put at once from several goroutines, read as
// they are published: each message arrives once, whole, and each run's
// messages side by side in its order.
func TestQueueRunsAndSingleMessagesFromManyGoroutines(t *testing.T) {
	q, head := newQueue(1<<30, 512)
	const producers, each = 4, 2000
	var wg sync.WaitGroup
	defer wg.Wait()
	for g := range producers {
		wg.Go(func() {
			for i := 0; i < each; {
				if g%2 == 0 {
					q.putOK([]byte{byte(g), byte(i), byte(i >> 8)})
					i++
					continue
				}
				k := min(1+i%7, each-i)
				run := make([][]byte, k)
				for j := range run {
					run[j] = []byte{byte(g), byte(i + j), byte((i + j) >> 8)}
				}
				for len(run) > 0 {
					_, n, ok := q.putRun(run, 3*len(run))
					if !ok {
						t.Error("putRun failed")
						return
					}
					run = run[n:]
				}
				i += k
			}
		})
	}
	next := make([]int, producers)
	s, i, off, seen := head, 0, 0, 0
	deadline := time.Now().Add(time.Minute)
	for seen < producers*each {
		count, _, final, ok := s.claimed()
		switch {
		case ok && i < count:
			l := s.published(i)
			if l < 0 {
				continue
			}
			m := s.data[off : off+l]
			g, n := int(m[0]), int(m[1])|int(m[2])<<8
			if l != 3 || n != next[g] {
				t.Fatalf("producer %d: message %d (%d bytes), want %d", g, n, l, next[g])
			}
			next[g]++
			i, off, seen = i+1, off+l, seen+1
		case ok && final && s.next.Load() != nil:
			s, i, off = s.next.Load(), 0, 0
		case time.Now().After(deadline):
			t.Fatalf("%d of %d messages read in a minute", seen, producers*each)
		default:
			runtime.Gosched() // a seal is under way, or nothing is published yet
		}
	}
}
