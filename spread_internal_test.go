package conn

import (
	"math"
	"testing"
	"time"
)

// A regression test from an adversarial review. What it caught:
// WithMaxConnectionAge / WithProbeInterval with a huge value ("never",
// e.g. math.MaxInt64) overflow in spread10 about half the time: the next
// rotation or probe is then due in the past, at once.
func TestSpread10DoesNotOverflow(t *testing.T) {
	for _, d := range []time.Duration{math.MaxInt64, 200 * 365 * 24 * time.Hour, 270 * 365 * 24 * time.Hour} {
		neg := 0
		for range 1000 {
			if spread10(d) <= 0 {
				neg++
			}
		}
		if neg > 0 {
			t.Errorf("spread10(%v) <= 0 in %d of 1000 calls", d, neg)
		}
	}
}
