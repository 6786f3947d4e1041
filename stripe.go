package conn

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// An inflightStripe is one stripe of a link's count of Writes under way,
// on cache lines of its own (two: CPUs fetch pairs).
type inflightStripe struct {
	n atomic.Int64
	_ [120]byte // to 128 bytes
}

// inflightStripes is how many stripes a link's count has: four per P,
// a power of two, at most 64, so that goroutines running on different
// cores seldom hash to the same one.
func inflightStripes() int {
	return 1 << bits.Len(uint(min(4*runtime.GOMAXPROCS(0), maxStripes)-1))
}

const maxStripes = 64

// stripeOf picks a stripe for the calling goroutine from the address of a
// variable on its stack: goroutines' stacks lie apart, so they mostly
// pick different stripes. The address above the 2 KiB a stack has at
// least is hashed (Fibonacci hashing: a multiply, the top bits), since
// stacks lie at multiples of their size and their low bits repeat. Any
// value is correct; a stack that moves only changes later choices.
func stripeOf() int {
	var local byte
	h := uint64(uintptr(unsafe.Pointer(&local)) >> 11)
	return int(h * 0x9e3779b97f4a7c15 >> 58) // 0 to 63: maxStripes
}
