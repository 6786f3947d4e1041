package conn

import (
	"math/rand/v2"
	"time"
)

// maxBackoff is the cap of Exponential, and the default cap of a Manager's
// backoff.
const maxBackoff = time.Minute

// Exponential takes a duration and returns another one that is twice as long,
// +/- 50%. It is used to provide backoff for operations that may fail and
// should avoid thundering herds. See
// https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
// for rationale.
//
// The result is never negative and never more than one minute. Near the cap
// the jitter is kept rather than lost: once twice d reaches the minute, the
// result is spread over [30s, 1m] instead of being exactly one minute, so
// clients that failed together do not retry together. For d up to 30s the
// result is never less than d. A d of zero or less returns zero. It is safe
// for concurrent use.
func Exponential(d time.Duration) time.Duration {
	return jitter(double(d, maxBackoff), maxBackoff, rand.Float64())
}

// double returns 2d, clamped to [0, max] without overflowing.
func double(d, max time.Duration) time.Duration {
	switch {
	case d <= 0:
		return 0
	case d > max/2:
		return max
	}
	return 2 * d
}

// jitter spreads nominal (0 <= nominal <= max) over [nominal/2, 3*nominal/2]
// with r drawn from [0, 1), cutting the top at max. It is a pure function so
// that the schedule can be tested without randomness.
func jitter(nominal, max time.Duration, r float64) time.Duration {
	if nominal <= 0 {
		return 0
	}
	lo := nominal / 2
	hi := nominal + nominal/2
	if hi > max || hi < nominal { // hi < nominal: overflow
		hi = max
	}
	return lo + time.Duration(r*float64(hi-lo))
}

// backoff is a Manager's reconnect schedule.
type backoff struct {
	base time.Duration // nominal wait after the first failure
	max  time.Duration // no wait is longer
}

// delay returns the wait before the next dial after attempt consecutive
// failures (attempt >= 1), with r drawn from [0, 1): the base doubled per
// failure, jittered by ±50%, never more than max. With the default base of
// one second the waits are about 1s, 2s, 4s, ... up to the cap.
func (b backoff) delay(attempt int, r float64) time.Duration {
	nominal := b.base
	for i := 1; i < attempt && nominal < b.max; i++ {
		nominal = double(nominal, b.max)
	}
	if nominal > b.max {
		nominal = b.max
	}
	return jitter(nominal, b.max, r)
}

// next is delay with a fresh random draw.
func (b backoff) next(attempt int) time.Duration {
	return b.delay(attempt, rand.Float64())
}
