package conn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-kit/log/level"
)

// spoolRetry is how long the syncer waits before it tries again a write or
// sync that failed (a full disk, say).
const spoolRetry = 250 * time.Millisecond

// runSpoolSyncer is the spool's syncer: it writes what Writes appended to
// the last segment file, syncs it as the mode asks, saves the read
// position in the ledger and removes the segments behind it. Close (or
// the Manager's Close) stops it after a last cycle that writes and syncs
// everything.
func (w *BatchWriter) runSpoolSyncer() {
	s := w.spool
	defer close(s.synced)
	st := syncerState{lastLedger: time.Now()}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		final := false
		select {
		case <-s.wakeSync:
		case <-timer.C:
		case <-s.stop:
			final = true
		case <-w.m.closing: // nothing more is delivered: keep what is held
			final = true
		}
		next := w.spoolCycle(&st, final)
		if final {
			return
		}
		timer.Stop()
		if next > 0 {
			timer.Reset(next)
		}
	}
}

// syncerState is what the syncer remembers between cycles.
type syncerState struct {
	lastLedger time.Time // the ledger's latest save
}

// spoolCycle writes, syncs and saves the position as due, and returns when
// the next cycle is due (0: when woken).
func (w *BatchWriter) spoolCycle(st *syncerState, final bool) time.Duration {
	s := w.spool
	var next, linger time.Duration
	if final {
		s.stopAppends() // the Manager's Close: what is appended from now on would stay in memory
	} else {
		linger = s.lingerLeft()
	}
	s.wmu.Lock()
	var err error
	if linger == 0 {
		err = w.drainLocked()
	}
	if err == nil && !s.dirtySince.IsZero() {
		s.mu.Lock()
		syncWanted := s.syncReq > s.syncedRecs
		s.mu.Unlock()
		due := s.dirtySince.Add(s.every)
		if final || syncWanted || s.every == 0 || !time.Now().Before(due) {
			err = s.syncLocked()
		} else {
			next = time.Until(due)
		}
	}
	w.noteSpoolFailure(err)
	s.wmu.Unlock()
	if err != nil {
		next = spoolRetry
	}
	next = sooner(sooner(next, w.saveSpoolPosition(st, final)), linger)
	if final {
		s.finish()
	}
	return next
}

// sooner returns the sooner of two waits, where 0 or less means none: 0
// if neither is.
func sooner(a, b time.Duration) time.Duration {
	if a <= 0 {
		return max(b, 0)
	}
	if b <= 0 {
		return a
	}
	return min(a, b)
}

// drainLocked writes the buffer's records to the files. A failure puts
// them back in front of the buffer. s.wmu must be held.
func (w *BatchWriter) drainLocked() error {
	s := w.spool
	s.mu.Lock()
	data, recs := s.buf, s.bufRecs
	if len(data) == 0 || s.syncStopped {
		s.mu.Unlock()
		return nil
	}
	s.buf, s.bufRecs, s.spare = s.spare[:0], 0, nil
	s.rotInFlight, s.projRot = s.projRot, 0 // appends go on from projEnd
	s.roomMadeLocked()
	s.mu.Unlock()
	wrote, err := s.writeOut(data)
	k := countRecords(data[:wrote])
	s.mu.Lock()
	s.written += k // appends come in order: the first records of the buffer
	if err != nil {
		s.buf = append(data[wrote:], s.buf...) // the rest, first in the file still
		s.bufRecs += recs - k
	} else {
		s.spare = data[:0]
	}
	s.rotInFlight = 0 // done: counted in s.disk now
	s.projectLocked()
	s.mu.Unlock()
	if k > 0 {
		if s.dirtySince.IsZero() {
			s.dirtySince = time.Now()
		}
		wake(s.wakeFeed)
	}
	return err
}

// countRecords counts the whole records at the start of data.
func countRecords(data []byte) uint64 {
	var n uint64
	for len(data) >= recHeaderLen {
		l := recordCost(int(binary.LittleEndian.Uint32(data[4:])))
		if int64(len(data)) < l {
			break
		}
		data, n = data[l:], n+1
	}
	return n
}

// syncLocked syncs the segment appended to. s.wmu must be held.
func (s *spool) syncLocked() error {
	if err := datasync(s.wf); err != nil {
		return fmt.Errorf("conn: spool: %w", err)
	}
	s.dirtySince = time.Time{}
	s.mu.Lock()
	s.syncedRecs = s.written
	s.notifySyncLocked()
	s.mu.Unlock()
	return nil
}

// noteSpoolFailure records the outcome of writes and syncs: a failure is
// logged when it begins, and Sync waiters hear of it. s.wmu must be held.
func (w *BatchWriter) noteSpoolFailure(err error) {
	s := w.spool
	s.mu.Lock()
	s.failed = err
	if err != nil {
		s.notifySyncLocked()
	}
	s.mu.Unlock()
	switch {
	case err != nil && !s.failing:
		w.m.log(level.ErrorValue(), "spool write failed; messages stay in memory and are written again", "dir", s.dir, "err", err)
	case err == nil && s.failing:
		w.m.log(level.InfoValue(), "spool writes again", "dir", s.dir)
	}
	s.failing = err != nil
}

// writeOut writes records to the segment files, beginning a new segment
// where the last would grow past segMax, and returns the bytes of data it
// wrote: whole records. A failed write is undone (truncated away), so that
// a record is in a file whole or not at all.
func (s *spool) writeOut(data []byte) (int, error) {
	done := 0
	for done < len(data) {
		rest := data[done:]
		s.mu.Lock()
		end := s.segs[len(s.segs)-1].end
		s.mu.Unlock()
		n := 0 // the records that fit in this segment
		for n < len(rest) {
			l := int(recordCost(int(binary.LittleEndian.Uint32(rest[n+4:]))))
			if end+int64(n+l) > s.segMax && (n > 0 || end > segHeaderLen) {
				break
			}
			n += l
		}
		if n == 0 {
			if err := s.rotate(); err != nil {
				return done, err
			}
			continue
		}
		if _, err := s.wf.WriteAt(rest[:n], end); err != nil {
			if terr := s.wf.Truncate(end); terr != nil {
				// The torn record stays in the file, where its checksum
				// finds it; appends go on in a new segment.
				s.mu.Lock()
				s.segs[len(s.segs)-1].sealed = true
				s.mu.Unlock()
				s.rotate()
			}
			return done, fmt.Errorf("conn: spool: %w", err)
		}
		s.mu.Lock()
		s.segs[len(s.segs)-1].end = end + int64(n)
		s.mu.Unlock()
		done += n
	}
	return done, nil
}

// rotate syncs and closes the segment appended to and begins the next.
func (s *spool) rotate() error {
	if err := datasync(s.wf); err != nil {
		return fmt.Errorf("conn: spool: %w", err)
	}
	s.mu.Lock()
	id := s.segs[len(s.segs)-1].id + 1
	s.mu.Unlock()
	old := s.wf
	if err := s.newSegment(id); err != nil {
		return err
	}
	old.Close()
	return nil
}

// notifySyncLocked wakes the Syncs waiting. s.mu must be held.
func (s *spool) notifySyncLocked() {
	if s.syncNote != nil {
		close(s.syncNote)
		s.syncNote = nil
	}
}

// saveSpoolPosition moves the ledger's read position past the records
// settled (delivered, or dropped and reported), at most once per sync
// interval unless final, and removes the segments behind it. It returns
// when it should look again: 0 if nothing is pending.
func (w *BatchWriter) saveSpoolPosition(st *syncerState, final bool) time.Duration {
	s := w.spool
	w.mu.Lock()
	frontier := w.spoolFrontierLocked()
	w.mu.Unlock()
	s.marksMu.Lock()
	pos, moved := s.ledger.pos, false
	k := 0
	for ; k < len(s.marks) && s.marks[k].to <= frontier; k++ {
		pos, moved = s.marks[k].pos, true
	}
	pending := k < len(s.marks)
	s.marksMu.Unlock()
	if !moved || pos == s.ledger.pos {
		if pending {
			return max(s.every, 10*time.Millisecond)
		}
		return 0
	}
	// At most once per sync interval, the window of duplicates after a
	// crash; at once when space is short: the files behind the position
	// go only when it is saved.
	s.mu.Lock()
	short := s.disk > s.maxBytes/2 || s.room != nil
	s.mu.Unlock()
	if due := st.lastLedger.Add(s.every); !final && !short && time.Now().Before(due) {
		return time.Until(due)
	}
	if err := s.ledger.write(pos); err != nil {
		w.m.log(level.ErrorValue(), "spool ledger write failed; delivered messages may be sent again", "dir", s.dir, "err", err)
		return spoolRetry
	}
	st.lastLedger = time.Now()
	s.marksMu.Lock()
	// Counted again: the feeder may have published meanwhile, merging
	// records into the last mark (it is then no longer settled) or adding
	// marks, and woken no one.
	k = 0
	for k < len(s.marks) && s.marks[k].to <= frontier {
		k++
	}
	s.marks = s.marks[k:]
	pending = len(s.marks) > 0
	s.marksMu.Unlock()
	s.mu.Lock()
	var gone []spoolSeg
	for len(s.segs) > 1 && (s.segs[0].id < pos.seg || s.segs[0].id == pos.seg && s.segs[0].sealed && pos.off >= s.segs[0].end) {
		gone = append(gone, s.segs[0])
		s.segs = s.segs[1:]
	}
	s.mu.Unlock()
	if len(gone) > 0 {
		var freed int64
		for _, g := range gone {
			if err := os.Remove(s.segName(g.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
				w.m.log(level.WarnValue(), "spool segment not removed", "file", s.segName(g.id), "err", err)
			}
			freed += g.end
		}
		syncDir(s.dir)
		s.mu.Lock()
		s.disk -= freed
		s.roomMadeLocked()
		s.mu.Unlock()
	}
	if pending {
		return max(s.every, 10*time.Millisecond)
	}
	return 0
}

// finish closes the files of a syncer that has made its last cycle.
func (s *spool) finish() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	s.syncStopped = true
	s.noAppends = true
	s.roomMadeLocked()
	s.notifySyncLocked()
	s.mu.Unlock()
	s.wf.Close()
	s.release()
}
