package main

// send -spool DIR: the BatchWriter's durable spool, the dial held back
// until the spool is open, the damaged records named on stderr as they
// are found, and what the status line and the summary say of the spool.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/seed44b27a20/conn"
)

const (
	// defaultSpoolSize is -spool-size's default.
	defaultSpoolSize = 1 << 30
	// spoolOverhead is what the spool's files take besides a line of
	// their own: a record's header and a segment's. A line longer than
	// -spool-size less this never fits (conn.WithSpool).
	spoolOverhead = conn.SpoolRecordOverhead + conn.SpoolSegmentOverhead
)

// spoolOptions makes the BatchWriter's spool durable: every line Write
// accepts is handed to the operating system within a millisecond (a crash
// of connpipe loses at most that) and synced within conn.DefaultSpoolSync
// (a power loss loses at most that). When it is full, the -full policy applies (ErrSpoolFull is an
// ErrBufferFull).
func spoolOptions(cfg sendConfig) []conn.BatchOption {
	return []conn.BatchOption{
		conn.WithSpool(cfg.spool, int64(cfg.spoolSize)),
		conn.WithDurableSpool(conn.DefaultSpoolSync),
	}
}

// room names what fills up and makes reading wait, or lines be dropped:
// the memory queue ("4.0 MiB queue", "4.0 MiB buffer"), or with -spool
// the spool ("1.0 GiB spool").
func (c *sendConfig) room(noun string) string {
	if c.spool != "" {
		return bytesize(int(c.spoolSize)) + " spool"
	}
	return bytesize(int(c.buffer)) + " " + noun
}

// dialAfter returns dial, held back until open is closed. The Manager
// dials as soon as it is made, and the BatchWriter that opens the spool
// needs the Manager: a send whose spool cannot be opened must not connect
// (a server would see a connection, and nothing on it).
func dialAfter(open <-chan struct{}, dial conn.DialContextFunc) conn.DialContextFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		select {
		case <-open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return dial(ctx, network, address)
	}
}

// A spoolWatch names on stderr each damaged record the spool skips, once.
// The BatchWriter logs every one, with its file and byte range, through
// the Manager's logger, which a spoolWatch is; its drop reports carry one
// only, the latest of those they sum, and serve as a second source.
type spoolWatch struct {
	con   *console
	mu    sync.Mutex
	named map[conn.SpoolDamageError]bool
}

func newSpoolWatch(con *console) *spoolWatch {
	return &spoolWatch{con: con, named: map[conn.SpoolDamageError]bool{}}
}

// Log is the Manager's logger (a go-kit log.Logger): it picks out the
// lines that name a damaged region of a spool file, by their keys (file,
// from, to, reason), and ignores the others; send reports the connection's
// changes through its state hook.
func (sw *spoolWatch) Log(keyvals ...any) error {
	var (
		d        conn.SpoolDamageError
		from, to bool
	)
	for i := 0; i+1 < len(keyvals); i += 2 {
		key, _ := keyvals[i].(string)
		v := keyvals[i+1]
		switch key {
		case "file":
			d.File = fmt.Sprint(v)
		case "from":
			d.From, from = asInt64(v)
		case "to":
			d.To, to = asInt64(v)
		case "reason":
			d.Reason = fmt.Sprint(v)
		}
	}
	if d.File != "" && from && to {
		sw.damaged(d)
	}
	return nil
}

// asInt64 returns v, a number of bytes, as an int64.
func asInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case uint64:
		return int64(n), true
	}
	n, err := strconv.ParseInt(fmt.Sprint(v), 10, 64)
	return n, err == nil
}

// dropReport hears the BatchWriter's drop reports: one that names a
// damaged region names the latest it counts.
func (sw *spoolWatch) dropReport(r conn.DropReport) {
	var d *conn.SpoolDamageError
	if errors.As(r.Err, &d) {
		sw.damaged(*d)
	}
}

// damaged names a damaged region on stderr, unless it was named already.
func (sw *spoolWatch) damaged(d conn.SpoolDamageError) {
	sw.mu.Lock()
	seen := sw.named[d]
	sw.named[d] = true
	sw.mu.Unlock()
	if seen {
		return
	}
	reason := ""
	if d.Reason != "" {
		reason = " (" + d.Reason + ")"
	}
	sw.con.Printf("%s: spool: damaged record skipped, its lines are lost: %s, bytes %d-%d%s", programName, d.File, d.From, d.To, reason)
}

// opened says what the spool holds from an earlier send, which goes out
// before any new input, and with -v that it is in use.
func (sw *spoolWatch) opened(con *console, cfg sendConfig, sp conn.SpoolStats) {
	if cfg.verbose {
		con.Printf("%s: spooling to %s: at most %s on disk, synced every %v", programName, cfg.spool, bytesize(int(cfg.spoolSize)), conn.DefaultSpoolSync)
	}
	if sp.Bytes > 0 {
		con.Printf("%s: spool %s holds %s from an earlier send%s: sending it before any new input", programName, cfg.spool, bytesize(sp.Bytes), oldest(sp, ", the oldest record %s old"))
	}
}

// oldest formats the age of the spool's oldest record with format, or
// returns "" if it holds none (or its age is unknown).
func oldest(sp conn.SpoolStats, format string) string {
	if sp.Bytes == 0 || sp.OldestAge <= 0 {
		return ""
	}
	return fmt.Sprintf(format, elapsed(sp.OldestAge))
}

// spoolStatus is the spool's part of the status line: the bytes on disk
// not yet read back into memory, the age of the oldest, and the latest
// failure to write the spool, if it fails now.
func spoolStatus(sp conn.SpoolStats) string {
	s := "spool " + bytesize(sp.Bytes)
	if sp.Bytes > 0 && sp.OldestAge > 0 {
		s += ", oldest " + countdown(sp.OldestAge)
	}
	if sp.Err != nil {
		s += " (failing: " + shortError(sp.Err) + ")"
	}
	return s
}

// summarize prints the spool's line of the summary, and one for the
// damaged records, and reports whether none was damaged. kept counts the
// lines kept in the spool for the next send.
func (sw *spoolWatch) summarize(con *console, cfg sendConfig, sp conn.SpoolStats, kept uint64) bool {
	var parts []string
	if kept > 0 {
		parts = append(parts, plural(kept, "line")+" left")
	}
	if sp.Bytes > 0 {
		parts = append(parts, bytesize(sp.Bytes)+" yet to be read from disk"+oldest(sp, ", the oldest record %s old"))
	}
	if len(parts) == 0 {
		con.Printf("%s: spool %s: empty", programName, cfg.spool)
	} else {
		con.Printf("%s: spool %s: %s; the next send -spool %s sends them first", programName, cfg.spool, strings.Join(parts, ", "), cfg.spool)
	}
	if sp.Err != nil {
		con.Printf("%s: spool %s: writing it failed: %v", programName, cfg.spool, sp.Err)
	}
	if sp.Damaged == 0 {
		return true
	}
	con.Printf("%s: spool %s: %s skipped (%s, each named above): their lines are lost", programName, cfg.spool, plural(sp.Damaged, "damaged region"), bytesize(sp.DamagedBytes))
	return false
}
