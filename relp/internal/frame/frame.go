// Package frame reads and writes RELP frames for the relp package and its
// test server, so that both sides apply the same grammar and the same
// bounds:
//
//	FRAME   = TXNR SP COMMAND SP DATALEN [SP DATA] LF
//	TXNR    = 1*9DIGIT
//	COMMAND = 1*32ALPHA
//	DATALEN = 1*9DIGIT   ; no SP and no DATA when it is 0
package frame

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// Grammar bounds, from the RELP specification (librelp doc/relp.md).
const (
	MaxTxnr       = 999_999_999 // the largest TXNR; the next one is 1
	maxDigits     = 9
	MaxCommandLen = 32
)

// NextTxnr returns the TXNR after t: 1 after MaxTxnr, as the specification
// says. (librelp's relpEngineNextTXNR yields 1,000,000,000 instead, which
// no frame can carry: a librelp peer cannot go past MaxTxnr in a session.)
func NextTxnr(t uint32) uint32 {
	if t >= MaxTxnr {
		return 1
	}
	return t + 1
}

// Append appends one frame to dst.
func Append(dst []byte, txnr uint32, cmd string, data []byte) []byte {
	dst = strconv.AppendUint(dst, uint64(txnr), 10)
	dst = append(dst, ' ')
	dst = append(dst, cmd...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(len(data)), 10)
	if len(data) > 0 {
		dst = append(dst, ' ')
		dst = append(dst, data...)
	}
	return append(dst, '\n')
}

// An Error is bytes that cannot begin or continue a frame, or a frame
// beyond a bound. Near holds the frame's bytes so far and a few after.
type Error struct {
	What string
	Near []byte
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s near %q", e.What, e.Near)
}

// A Reader reads frames from a bufio.Reader. It never allocates more than
// its data bound, and fails on the first byte that cannot belong to a
// frame, so it never waits for bytes a frame could not use.
type Reader struct {
	br      *bufio.Reader
	maxData int
	head    [maxDigits + 1 + MaxCommandLen + 1 + maxDigits + 1]byte // the header so far, for errors
	n       int
	cmd     [MaxCommandLen]byte
	data    []byte
	slow    bool // byte by byte only: for the tests that compare the two ways
}

// NewReader returns a Reader of frames whose DATALEN is at most maxData.
func NewReader(br *bufio.Reader, maxData int) *Reader {
	return &Reader{br: br, maxData: maxData}
}

// A Frame is one frame read. Cmd and Data are valid until the next Read.
type Frame struct {
	Txnr uint32
	Cmd  []byte
	Data []byte
}

// Read reads the next frame. It returns io.EOF if the input ends before a
// frame begins, io.ErrUnexpectedEOF if it ends inside one, the input's
// other errors as they are, and an *Error for bytes the grammar refuses.
func (r *Reader) Read() (Frame, error) {
	if !r.slow {
		if b, _ := r.br.Peek(r.br.Buffered()); len(b) > 0 {
			if f, n, ok := r.parse(b); ok {
				r.br.Discard(n)
				return f, nil
			}
		}
	}
	r.n = 0
	txnr, err := r.number(true)
	if err != nil {
		return Frame{}, err
	}
	ncmd := 0
	for {
		c, err := r.byte(false)
		if err != nil {
			return Frame{}, err
		}
		if c == ' ' && ncmd > 0 {
			break
		}
		if !isAlpha(c) {
			return Frame{}, r.fail("command must be 1 to 32 letters")
		}
		if ncmd == MaxCommandLen {
			return Frame{}, r.fail("command longer than 32 letters")
		}
		r.cmd[ncmd] = c
		ncmd++
	}
	n, err := r.number(false)
	if err != nil {
		return Frame{}, err
	}
	if n > uint32(r.maxData) {
		return Frame{}, r.fail("DATALEN above the limit of " + strconv.Itoa(r.maxData))
	}
	f := Frame{Txnr: txnr, Cmd: r.cmd[:ncmd]}
	// number consumed the byte after DATALEN: SP before data, LF if none.
	last := r.head[r.n-1]
	switch {
	case n == 0 && last == '\n':
		return f, nil
	case n == 0 || last != ' ':
		return Frame{}, r.fail("DATALEN must be followed by SP and data, or be 0 and followed by LF")
	}
	if cap(r.data) < int(n) {
		r.data = make([]byte, n)
	}
	r.data = r.data[:n]
	if _, err := io.ReadFull(r.br, r.data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	c, err := r.br.ReadByte()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	if c != '\n' {
		r.n = 0
		r.add(c)
		return Frame{}, r.fail("frame data not followed by LF")
	}
	f.Data = r.data
	return f, nil
}

// parse reads a frame that is whole in b, the bytes buffered, without
// reading byte by byte: the usual case, many answers in one read. It
// returns the frame and its length, or false if b holds no whole valid
// frame within the bounds (Read then goes byte by byte, which waits for
// more input or names the fault).
func (r *Reader) parse(b []byte) (Frame, int, bool) {
	i := 0
	number := func() (uint32, bool) {
		var v uint32
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if i-start == maxDigits {
				return 0, false
			}
			v = v*10 + uint32(b[i]-'0')
			i++
		}
		return v, i > start && i < len(b)
	}
	txnr, ok := number()
	if !ok || b[i] != ' ' {
		return Frame{}, 0, false
	}
	i++
	start := i
	for i < len(b) && isAlpha(b[i]) {
		if i-start == MaxCommandLen {
			return Frame{}, 0, false
		}
		i++
	}
	if i == start || i == len(b) || b[i] != ' ' {
		return Frame{}, 0, false
	}
	ncmd := copy(r.cmd[:], b[start:i])
	i++
	n, ok := number()
	if !ok || n > uint32(r.maxData) {
		return Frame{}, 0, false
	}
	f := Frame{Txnr: txnr, Cmd: r.cmd[:ncmd]}
	switch {
	case n == 0 && b[i] == '\n':
		return f, i + 1, true
	case n == 0 || b[i] != ' ':
		return Frame{}, 0, false
	}
	i++
	end := i + int(n)
	if end >= len(b) || b[end] != '\n' {
		return Frame{}, 0, false
	}
	if cap(r.data) < int(n) {
		r.data = make([]byte, n)
	}
	r.data = append(r.data[:0], b[i:end]...)
	f.Data = r.data
	return f, end + 1, true
}

// number reads 1 to 9 digits and the byte after them (kept in head).
func (r *Reader) number(first bool) (uint32, error) {
	var v uint32
	digits := 0
	for {
		c, err := r.byte(first && digits == 0)
		if err != nil {
			return 0, err
		}
		if c < '0' || c > '9' {
			if digits == 0 {
				return 0, r.fail("expected a number")
			}
			if first && c != ' ' {
				return 0, r.fail("TXNR must be followed by SP")
			}
			return v, nil
		}
		if digits == maxDigits {
			return 0, r.fail("number longer than 9 digits")
		}
		v = v*10 + uint32(c-'0')
		digits++
	}
}

func (r *Reader) byte(atStart bool) (byte, error) {
	c, err := r.br.ReadByte()
	if err != nil {
		if err == io.EOF && !atStart {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	r.add(c)
	return c, nil
}

func (r *Reader) add(c byte) {
	if r.n < len(r.head) {
		r.head[r.n] = c
		r.n++
	}
}

// fail quotes the header so far and up to 16 bytes already buffered after
// it, never waiting for more.
func (r *Reader) fail(what string) error {
	near := append([]byte(nil), r.head[:r.n]...)
	if k := min(r.br.Buffered(), 16); k > 0 {
		more, _ := r.br.Peek(k)
		near = append(near, more...)
	}
	return &Error{What: what, Near: near}
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// Ready reports whether Read can return without waiting for input: a
// whole frame is buffered, or buffered bytes already break the grammar or
// a bound. It never blocks.
func (r *Reader) Ready() bool {
	b, _ := r.br.Peek(r.br.Buffered())
	i := 0
	field := func(ok func(byte) bool, maxLen int) (int, bool, bool) { // length, complete, bad
		start := i
		for i < len(b) && ok(b[i]) {
			i++
			if i-start > maxLen {
				return 0, true, true
			}
		}
		if i == len(b) {
			return 0, false, false
		}
		return i - start, true, i == start
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for _, f := range []struct {
		ok  func(byte) bool
		max int
	}{{isDigit, maxDigits}, {isAlpha, MaxCommandLen}} {
		_, complete, bad := field(f.ok, f.max)
		if !complete || bad {
			return complete
		}
		if b[i] != ' ' {
			return true
		}
		i++
	}
	start := i
	_, complete, bad := field(isDigit, maxDigits)
	if !complete || bad {
		return complete
	}
	n, _ := strconv.Atoi(string(b[start:i]))
	if n == 0 || n > r.maxData {
		return true // LF or a bad byte is buffered; or over the bound
	}
	return len(b)-i >= 1+n+1
}
