package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// statusInterval is how often the live status line is redrawn.
const statusInterval = 250 * time.Millisecond

// echoRoom is the room left after the status line, and erased with it, for
// the "^C" a terminal echoes at Ctrl-C: it neither wraps the line nor stays.
const echoRoom = 2

// A console prints whole lines (events, summaries) and, when its status
// writer is a terminal, one status line that is redrawn in place with \r.
// It keeps the two apart: before a line is printed the status line is
// erased, and it is drawn again after. Lines and status may go to different
// writers (stdout and stderr on one terminal). Safe for concurrent use.
type console struct {
	mu     sync.Mutex
	lines  io.Writer // where Printf writes
	w      io.Writer // where the status line is drawn
	tty    bool      // w is a terminal: draw the status line
	width  int       // the terminal's columns; the status line is cut to fit
	status string    // the status line shown; "" if none
}

// newConsole returns a console that prints lines and the status line to w.
func newConsole(w io.Writer, tty bool) *console {
	return newSplitConsole(w, w, tty)
}

// newSplitConsole returns a console that prints lines to lines and the
// status line to status.
func newSplitConsole(lines, status io.Writer, tty bool) *console {
	c := &console{lines: lines, w: status, tty: tty, width: 80}
	if f, ok := status.(*os.File); ok && tty {
		if n := termWidth(f); n > 0 {
			c.width = n
		}
	}
	return c
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Printf prints one line (a newline is added).
func (c *console) Printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	status := c.status
	if status != "" {
		c.eraseLocked()
	}
	fmt.Fprintf(c.lines, format+"\n", args...)
	if status != "" {
		fmt.Fprint(c.w, status)
		c.status = status
	}
}

// Status draws s as the status line, on a terminal; elsewhere it does
// nothing.
func (c *console) Status(s string) {
	if !c.tty {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s = truncate(s, c.width-1-echoRoom)
	pad := 0
	if c.status != "" {
		pad = utf8.RuneCountInString(c.status) + echoRoom - utf8.RuneCountInString(s)
	}
	fmt.Fprintf(c.w, "\r%s%s", s, strings.Repeat(" ", max(pad, 0)))
	if pad > 0 {
		fmt.Fprintf(c.w, "\r%s", s)
	}
	c.status = s
}

// ClearStatus erases the status line, if one is shown.
func (c *console) ClearStatus() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eraseLocked()
}

func (c *console) eraseLocked() {
	if c.status != "" {
		fmt.Fprintf(c.w, "\r%s\r", strings.Repeat(" ", utf8.RuneCountInString(c.status)+echoRoom))
		c.status = ""
	}
}

func truncate(s string, n int) string {
	if n < 10 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// A meter turns counters sampled now and then into rates.
type meter struct {
	at           time.Time
	lines, bytes uint64
}

// rate returns the lines and bytes per second since the last call, and
// remembers the new sample.
func (m *meter) rate(now time.Time, lines, bytes uint64) (lps, bps float64) {
	if !m.at.IsZero() {
		if d := now.Sub(m.at).Seconds(); d > 0 {
			lps = float64(lines-m.lines) / d
			bps = float64(bytes-m.bytes) / d
		}
	}
	*m = meter{at: now, lines: lines, bytes: bytes}
	return lps, bps
}

// count formats n with thousands separators: 1234567 → "1,234,567".
func count[T ~int | ~int64 | ~uint64](n T) string {
	s := strconv.FormatInt(int64(n), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// plural returns "1 line" or "2 lines".
func plural[T ~int | ~int64 | ~uint64](n T, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return count(n) + " " + word + "s"
}

// bytesize formats n bytes with a binary unit: "512 B", "1.5 KiB", "4.0 MiB".
func bytesize[T ~int | ~int64 | ~uint64 | ~float64](n T) string {
	f := float64(n)
	if f < 1024 {
		return strconv.FormatFloat(f, 'f', 0, 64) + " B"
	}
	for _, unit := range []string{"KiB", "MiB", "GiB"} {
		f /= 1024
		if f < 1024 || unit == "GiB" {
			prec := 1
			if f >= 100 {
				prec = 0
			}
			return strconv.FormatFloat(f, 'f', prec, 64) + " " + unit
		}
	}
	panic("unreachable")
}

// rateString formats a rate of lines per second: "850", "12.3k", "1.20M".
func rateString(f float64) string {
	switch {
	case f < 1000:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case f < 1e5:
		return strconv.FormatFloat(f/1e3, 'f', 1, 64) + "k"
	case f < 1e6:
		return strconv.FormatFloat(f/1e3, 'f', 0, 64) + "k"
	default:
		return strconv.FormatFloat(f/1e6, 'f', 2, 64) + "M"
	}
}

// elapsed formats a duration for people: "850ms", "4.21s", "2m3s".
func elapsed(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// sizeFlag is a flag.Value for a size in bytes: a number, optionally
// followed by a unit: k/K/KiB, M/MiB, G/GiB (powers of 1024), or B.
type sizeFlag int

func (s *sizeFlag) String() string {
	n := int(*s)
	for _, u := range []string{"", "k", "M", "G"} {
		if n%1024 != 0 || n == 0 || u == "G" {
			return strconv.Itoa(n) + u
		}
		n /= 1024
	}
	return strconv.Itoa(n) + "G"
}

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// maxSize bounds a size flag: 1 TiB, or what an int holds on 32-bit
// platforms (2 GiB); the library caps the buffer further.
const maxSize = min(1<<40, math.MaxInt)

func parseSize(v string) (int, error) {
	num := strings.TrimRightFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(v[len(num):])
	mult := 1
	switch strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(unit, "iB"), "B")) {
	case "":
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("unknown unit %q: use a number of bytes, or k, M or G (KiB, MiB, GiB)", unit)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 || n > maxSize/mult {
		return 0, fmt.Errorf("want a positive size such as 4M or 65536, at most %s", bytesize(maxSize))
	}
	return n * mult, nil
}
