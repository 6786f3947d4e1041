package frame

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// read reads every frame of in, going byte by byte only if slow, through
// a bufio.Reader of size bufSize over a reader that returns chunk bytes
// at a time, and returns what it read, one line per frame or error.
func read(in []byte, slow bool, bufSize, chunk int) []string {
	var src io.Reader = bytes.NewReader(in)
	if chunk == 1 {
		src = iotest.OneByteReader(src)
	} else if chunk > 1 {
		src = iotest.HalfReader(src)
	}
	r := NewReader(bufio.NewReaderSize(src, bufSize), 64)
	r.slow = slow
	var out []string
	for len(out) < 1000 {
		f, err := r.Read()
		var fe *Error
		switch {
		case errors.As(err, &fe):
			return append(out, "error: "+fe.What)
		case err != nil:
			return append(out, "error: "+err.Error())
		}
		out = append(out, string(rune('0'+f.Txnr%10))+" "+string(f.Cmd)+" "+string(f.Data))
	}
	return out
}

func TestReadBothWays(t *testing.T) {
	for _, in := range []string{
		"1 rsp 6 200 OK\n2 rsp 6 200 OK\n",
		"1 rsp 0\n",
		"0 serverclose 0\n",
		"1 rsp 6 200 OK\n2 rsp 6 200 OK",              // cut
		"1 rsp 6 200 OKX",                             // no LF
		"12345678901 rsp 0\n",                         // 10 digits
		"1 rsp 65 " + string(make([]byte, 65)) + "\n", // above the bound
		"1 rsp 3 a\nb\n",
		"1 r2p 0\n",
		"1  rsp 0\n",
		"1 rsp 00\n",
		"1 rsp 0 \n",
	} {
		for _, bufSize := range []int{16, 4096} {
			for _, chunk := range []int{0, 1, 2} {
				fast, slow := read([]byte(in), false, bufSize, chunk), read([]byte(in), true, bufSize, chunk)
				if len(fast) != len(slow) || (len(fast) > 0 && fast[len(fast)-1] != slow[len(slow)-1]) {
					t.Errorf("%q (buffer %d, chunk %d): fast %q, slow %q", in, bufSize, chunk, fast, slow)
				}
			}
		}
	}
}

// FuzzReadBothWays checks that reading a whole buffered frame at once
// reads what going byte by byte reads, frames and faults alike.
func FuzzReadBothWays(f *testing.F) {
	f.Add([]byte("1 rsp 6 200 OK\n2 rsp 6 200 OK\n0 serverclose 0\n"), uint8(0))
	f.Add([]byte("7 rsp 0\n8 rsp 3 500"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, mode uint8) {
		bufSize, chunk := 16+int(mode%4)*100, int(mode/4%3)
		fast, slow := read(in, false, bufSize, chunk), read(in, true, bufSize, chunk)
		if len(fast) != len(slow) {
			t.Fatalf("fast %q, slow %q", fast, slow)
		}
		for i := range fast {
			if fast[i] != slow[i] {
				t.Fatalf("frame %d: fast %q, slow %q", i, fast[i], slow[i])
			}
		}
	})
}
