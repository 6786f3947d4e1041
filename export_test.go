package conn

import "time"

// WithPeekLivenessCheck makes a Manager's liveness check use the peek, the
// portable check of every Unix, rather than the platform's own, so that
// the tests run on Linux the path that macOS and the BSDs take.
func WithPeekLivenessCheck() Option {
	return optionFunc(func(c *config) { c.probe = probePeek })
}

// WithMaxLinger shortens how long a switched-out connection waits for its
// peer's close (maxLinger, 10 s), for tests that go past it.
func WithMaxLinger(d time.Duration) Option {
	return optionFunc(func(c *config) { c.maxLinger = d })
}

// The system's errors for a datagram too large and a refused port, for the
// fakes that imitate them (Plan 9 has none of its own).
var (
	ErrMsgSize = errMsgSize
	ErrRefused = errRefused
)

// FlushesWaiting counts the Flushes that wait on w, for tests that must
// not act before a Flush has begun to wait.
func FlushesWaiting(w *BatchWriter) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.flushes)
}
