package conn

import (
	"maps"
	"math"
	"slices"
	"testing"
	"time"
)

func TestJitterSpreadsHalfEitherSideAndKeepsItAtTheCap(t *testing.T) {
	const max = time.Minute
	cases := []struct {
		nominal time.Duration
		r       float64
		want    time.Duration
	}{
		{0, 0.7, 0},
		{1, 0.99, 0}, // 1ns spreads over [0, 1]: no overflow to take for one
		{time.Second, 0, 500 * time.Millisecond},
		{time.Second, 0.5, time.Second},
		{time.Second, 1, 1500 * time.Millisecond},
		{max, 0, max / 2},
		{max, 0.5, max/2 + max/4},
		{max, 1, max},
		{50 * time.Second, 1, max}, // 75s cut at the cap
	}
	for _, tc := range cases {
		if have := jitter(tc.nominal, max, tc.r); have != tc.want {
			t.Errorf("jitter(%v, r=%v) = %v, want %v", tc.nominal, tc.r, have, tc.want)
		}
	}
}

func TestBackoffDoublesPerAttemptUpToTheCap(t *testing.T) {
	b := backoff{base: 100 * time.Millisecond, max: 2 * time.Second}
	nominal := []time.Duration{100, 200, 400, 800, 1600, 2000, 2000}
	for i, n := range nominal {
		n *= time.Millisecond
		if lo, have := n/2, b.delay(i+1, 0); have != lo {
			t.Errorf("attempt %d, lowest draw: %v, want %v", i+1, have, lo)
		}
		if hi, have := min(n+n/2, b.max), b.delay(i+1, 1); have != hi {
			t.Errorf("attempt %d, highest draw: %v, want %v", i+1, have, hi)
		}
	}
	if lo, hi := b.delay(math.MaxInt, 0), b.delay(math.MaxInt, 1); lo != b.max/2 || hi != b.max {
		t.Errorf("attempt MaxInt spreads over [%v, %v], want [max/2, max]", lo, hi)
	}
}

func TestExponentialRanges(t *testing.T) {
	cases := []struct {
		d      time.Duration
		lo, hi time.Duration
	}{
		{-time.Hour, 0, 0},
		{0, 0, 0},
		{1, 1, 3},
		{time.Second, time.Second, 3 * time.Second},
		{20 * time.Second, 20 * time.Second, time.Minute},
		{30 * time.Second, 30 * time.Second, time.Minute},
		{45 * time.Second, 30 * time.Second, time.Minute}, // doubled past the cap: spread over [30s, 1m]
		{time.Hour, 30 * time.Second, time.Minute},
		{math.MaxInt64, 30 * time.Second, time.Minute},
	}
	for _, tc := range cases {
		seen := map[time.Duration]bool{}
		for range 1000 {
			have := Exponential(tc.d)
			if have < tc.lo || have > tc.hi {
				t.Fatalf("Exponential(%v) = %v, want within [%v, %v]", tc.d, have, tc.lo, tc.hi)
			}
			seen[have] = true
		}
		if tc.hi-tc.lo > time.Millisecond && len(seen) < 100 {
			t.Errorf("Exponential(%v): %d distinct values in 1000 draws; the jitter is lost", tc.d, len(seen))
		}
		if lowest := slices.Min(slices.Collect(maps.Keys(seen))); tc.hi-tc.lo > time.Millisecond && lowest > tc.lo+(tc.hi-tc.lo)/4 {
			t.Errorf("Exponential(%v): lowest of 1000 draws %v, want the bottom quarter of [%v, %v] reached", tc.d, lowest, tc.lo, tc.hi)
		}
	}
}

func FuzzExponential(f *testing.F) {
	for _, d := range []int64{-1, 0, 1, int64(time.Second), int64(30 * time.Second), int64(time.Minute), math.MaxInt64, math.MinInt64} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		d := time.Duration(n)
		have := Exponential(d)
		if have < 0 || have > maxBackoff {
			t.Fatalf("Exponential(%v) = %v: outside [0, %v]", d, have, maxBackoff)
		}
		if d > 0 && d <= maxBackoff/2 && have < d {
			t.Fatalf("Exponential(%v) = %v: less than its input", d, have)
		}
	})
}

func FuzzBackoffDelay(f *testing.F) {
	f.Add(int64(time.Second), int64(time.Minute), 1, 0.5)
	f.Add(int64(1), int64(math.MaxInt64), 64, 0.999)
	f.Fuzz(func(t *testing.T, base, max int64, attempt int, r float64) {
		if base <= 0 || max < base || attempt < 1 || !(r >= 0 && r < 1) {
			t.Skip()
		}
		b := backoff{base: time.Duration(base), max: time.Duration(max)}
		have := b.delay(attempt, r)
		if have < 0 || have > b.max {
			t.Fatalf("delay(%d, %v) with %+v = %v: outside [0, max]", attempt, r, b, have)
		}
		if have < b.base/2 {
			t.Fatalf("delay(%d, %v) with %+v = %v: below half the base", attempt, r, b, have)
		}
	})
}

func TestDoubleClampsWithoutOverflow(t *testing.T) {
	for _, tc := range []struct{ d, max, want time.Duration }{
		{-1, 10, 0},
		{0, 10, 0},
		{1, 3, 2}, // 2d fits exactly below an odd cap: not clamped
		{2, 3, 3},
		{5, 10, 10},
		{6, 10, 10},
		{math.MaxInt64 / 2, math.MaxInt64, math.MaxInt64 - 1},
		{math.MaxInt64, math.MaxInt64, math.MaxInt64},
	} {
		if have := double(tc.d, tc.max); have != tc.want {
			t.Errorf("double(%d, %d) = %d, want %d", tc.d, tc.max, have, tc.want)
		}
	}
}
