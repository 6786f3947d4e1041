package relp

import "github.com/seed44b27a20/conn"

// SetNextTxnr makes s's next message use txnr t: for the wrap, which
// would otherwise take a billion messages.
func SetNextTxnr(s conn.AckSession, t uint32) { s.(*session).next = t }

// Drain forgets s's outstanding messages, as if all were answered and
// reported: for benchmarks of AppendBatch alone.
func Drain(s conn.AckSession) {
	ss := s.(*session)
	ss.mu.Lock()
	ss.q, ss.head = ss.q[:0], 0
	ss.mu.Unlock()
}

// QueueCap returns the capacity of s's queue of outstanding messages.
func QueueCap(s conn.AckSession) int {
	ss := s.(*session)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return cap(ss.q)
}
