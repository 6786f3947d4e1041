package conn

import "testing"

// put returns each message's place: its sequence number and the payload
// bytes before it, counted across seals, in the segment that takes the
// claim and in the one a seal begins.
func TestQueuePutReturnsTheSequenceAndTheBytesBefore(t *testing.T) {
	q, _ := newQueue(1<<20, 64)
	var seq, before uint64
	sealed := 0
	for i := range 12 {
		p := make([]byte, 3+i%5)
		a := q.active.Load()
		at, ok := q.put(p)
		if !ok {
			t.Fatalf("put %d failed", i)
		}
		if q.active.Load() != a {
			sealed++
		}
		if at != (place{seq, before}) {
			t.Fatalf("message %d (%d bytes) at %+v, want {seq:%d bytes:%d}", i, len(p), at, seq, before)
		}
		seq, before = seq+1, before+uint64(len(p))
	}
	if sealed < 2 {
		t.Fatalf("%d seals: the places were not checked past a seal", sealed)
	}
}
