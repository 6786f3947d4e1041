package conn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log/level"
)

// DefaultSpoolSync is how long, at most, a message waits to be synced to
// disk in a durable spool (WithDurableSpool), and how often a
// disk-assisted spool syncs what it holds.
const DefaultSpoolSync = 250 * time.Millisecond

// ErrSpoolFull is returned by BatchWriter.Write when the spool has no room
// for the message: its files hold maxBytes (WithSpool), or the disk
// refuses writes and the spool's write buffer is full. It matches
// ErrBufferFull: the message was dropped and counted as Rejected, or, with
// WithWaitWhenFull, waited for room as long as that allows.
var ErrSpoolFull = fmt.Errorf("%w: spool full", ErrBufferFull)

// ErrNotDurable is returned by BatchWriter.Sync when the BatchWriter has
// no durable spool (WithDurableSpool): its messages live in memory.
var ErrNotDurable = errors.New("conn: Sync needs a durable spool (WithSpool and WithDurableSpool)")

// ErrSpoolInUse is matched by the error of opening a spool that another
// BatchWriter, in this process or another, holds open. The directory is
// not touched.
var ErrSpoolInUse = errors.New("conn: spool directory in use by another BatchWriter (its lock file is held)")

// What the spool's files take besides the messages: each message's record
// header, and each segment file's header. A message longer than maxBytes
// (WithSpool) less both never fits.
const (
	SpoolRecordOverhead  = recHeaderLen
	SpoolSegmentOverhead = segHeaderLen
)

// WithSpool gives the BatchWriter a spool: segment files in dir (created
// if missing, mode 0700) holding at most maxBytes, so that an outage
// longer than the memory buffer neither blocks the program nor drops its
// messages, and, with WithDurableSpool, a crash loses nothing that was
// synced. One BatchWriter at a time may hold a directory: another, in this
// process or another, fails to open it (OpenBatchWriter says why; a
// BatchWriter from NewBatchWriter then refuses every Write with that
// error).
//
// By itself WithSpool is disk-assisted: messages go to memory as without
// a spool and reach disk only when the memory buffer is full, which a
// connection that keeps up never lets happen, so it costs nothing then.
// From that moment every message goes to disk, behind those already
// there, until the spool has given all it holds back to memory; order is
// kept throughout. What goes to the spool is handed to the operating
// system within a millisecond (or 128 KiB), which a crash of the program
// does not undo, and synced within DefaultSpoolSync (a power loss loses at
// most that); what is in memory, up to WithBufferSize, is lost by a crash
// as without a spool.
//
// When the spool is full (maxBytes counts its files' bytes,
// SpoolRecordOverhead per message and SpoolSegmentOverhead per file
// included), Write follows the full policy: it fails with ErrSpoolFull, or
// waits with WithWaitWhenFull. A message longer than maxBytes less both
// overheads (36 bytes) is refused with ErrTooLarge, as is one that does
// not fit in the memory buffer.
//
// On open, what the spool holds that was not delivered (written, or with
// WithAcks acknowledged) is sent, in order, before any new message. A
// record found damaged or cut short (a crash mid-write, a power loss, a
// file changed underneath) is skipped, never delivered, logged at level
// warn with its file and byte range, and counted (SpoolStats.Damaged, and
// in the drop report). A spool written by a newer format is refused with
// an error matching ErrSpoolVersion. A value of maxBytes below 1 means 1
// GiB.
func WithSpool(dir string, maxBytes int64) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		c.spool = true
		c.spoolDir = dir
		c.spoolMax = maxBytes
		if maxBytes < 1 {
			c.spoolMax = 1 << 30
		}
	})
}

// WithDurableSpool makes the spool (WithSpool) durable: every message Write
// accepts goes to disk, and is synced (fdatasync on Linux, F_FULLFSYNC on
// macOS, FlushFileBuffers on Windows, fsync elsewhere) at most every long
// after it was accepted, together with every message accepted meanwhile: a
// group commit. A crash of the program loses only what Write accepted and
// the spool had not yet handed to the operating system, which it does
// within a millisecond of a message (or once 128 KiB wait); a power loss
// loses at most every's worth, plus the sync under way. Sync waits until every message accepted before
// it is synced. A value of every below 1 syncs after every write to the
// file: the smallest window, the slowest. Without WithSpool it has no
// effect, and OpenBatchWriter fails.
//
// After a crash, messages delivered in about the last every before it may be
// sent again: the read position is saved with the syncs.
func WithDurableSpool(every time.Duration) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		c.durable = true
		c.syncEvery = max(every, 0)
	})
}

// SpoolStats describes a BatchWriter's spool (WithSpool).
type SpoolStats struct {
	// Bytes is what the spool's files hold that has not yet gone back to
	// memory (after Close, with what Close left there), record headers
	// included; Files the number of segment files.
	Bytes int64
	Files int
	// DiskBytes is the size of its files, what maxBytes bounds.
	DiskBytes int64
	// OldestAge is the age of the oldest record in Bytes (zero when
	// Bytes is), by its time stamp: the clock is read for the first record
	// of each write to the file and every 256 records, so a stamp may be
	// a few milliseconds early.
	OldestAge time.Duration
	// Spooled counts the messages Write put in the spool, and their bytes.
	Spooled      uint64
	SpooledBytes uint64
	// Recovered counts the messages found in the spool when it was opened
	// and given to memory to be sent.
	Recovered uint64
	// Damaged counts the regions of the spool's files skipped because
	// they held no valid record, and DamagedBytes their bytes.
	Damaged      uint64
	DamagedBytes uint64
	// Err is the latest failure to write or sync the spool's files, nil
	// once a write succeeds after it. Messages that failed stay in memory
	// and are written again.
	Err error
}

// A SpoolDamageError describes bytes of a spool file that held no valid
// record: they were skipped and never delivered.
type SpoolDamageError struct {
	File     string // the segment file
	From, To int64  // the byte range skipped
	Reason   string // "checksum mismatch", "cut short", ...
}

func (e *SpoolDamageError) Error() string {
	return fmt.Sprintf("conn: spool file %s damaged at bytes %d-%d (%s): skipped", e.File, e.From, e.To, e.Reason)
}

// openSpools holds the directories this process has open, which a flock
// or Windows handle refuses to a second opener anyway, but an fcntl lock
// (illumos, solaris, aix), a lock on NFS and platforms without locks do
// not. Directories are compared as files (os.SameFile), so that a symbolic
// link or a second mount of one is the same directory.
var openSpools struct {
	mu   sync.Mutex
	dirs []os.FileInfo
}

// claimDir records dir as open in this process, or fails with
// ErrSpoolInUse.
func claimDir(dir string) (os.FileInfo, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("conn: spool: %w", err)
	}
	openSpools.mu.Lock()
	defer openSpools.mu.Unlock()
	for _, d := range openSpools.dirs {
		if os.SameFile(d, fi) {
			return nil, fmt.Errorf("%w: %s", ErrSpoolInUse, dir)
		}
	}
	openSpools.dirs = append(openSpools.dirs, fi)
	return fi, nil
}

// unclaimDir forgets a directory claimDir recorded.
func unclaimDir(fi os.FileInfo) {
	openSpools.mu.Lock()
	defer openSpools.mu.Unlock()
	for i, d := range openSpools.dirs {
		if d == fi {
			openSpools.dirs = append(openSpools.dirs[:i], openSpools.dirs[i+1:]...)
			return
		}
	}
}

// A spoolSeg is a segment file.
type spoolSeg struct {
	id     uint64
	end    int64 // the end of its good records: its size
	sealed bool  // no more records are appended
}

// spool is a BatchWriter's disk. Writes append records to a buffer under
// mu; the syncer (spoolwrite.go) writes the buffer to the last segment
// file, syncs, saves the read position in the ledger and removes the
// segments behind it; the feeder (spoolfeed.go) reads records in order
// and puts them in the BatchWriter's memory queue.
type spool struct {
	dir      string
	claim    os.FileInfo // the directory, in openSpools
	maxBytes int64
	segMax   int64 // a segment is sealed once it would grow past this
	bufMax   int   // the buffer's bound, but one record always fits
	durable  bool
	every    time.Duration
	lockf    *os.File
	ledger   *ledger // the syncer's

	// Writing to the files: the syncer's, or a Write's that finds the
	// buffer full.
	wmu        sync.Mutex
	wf         *os.File  // the last segment, appended to
	dirtySince time.Time // the first write not yet synced; zero if none
	failing    bool      // the latest write or sync failed (logged once)
	firstNew   uint64    // the first segment of this life; those before were recovered

	wakeSync chan struct{} // nudges the syncer; capacity 1
	wakeFeed chan struct{} // nudges the feeder; capacity 1
	stop     chan struct{} // closed by Close: the syncer's last cycle
	synced   chan struct{} // closed when the syncer returns

	mu          sync.Mutex
	buf         []byte // records not yet in a file
	bufSince    int64  // unix nanoseconds when the first of them was appended
	projEnd     int64  // the last segment's end once the buffer is written
	projRot     int64  // the segments writing the buffer will begin
	rotInFlight int64  // those that a write under way will begin
	stamp       int64  // the time stamp appends use: read from the clock at most every stampReuse appends
	stampUses   int
	bufRecs     uint64        // how many
	spare       []byte        // the other buffer
	disk        int64         // the files' bytes plus len(buf): what maxBytes bounds
	segs        []spoolSeg    // the segment files, in order; the last takes appends
	appended    uint64        // records appended in this life
	appendedB   uint64        // their payload bytes
	written     uint64        // of those, in a file
	syncedRecs  uint64        // of those, synced
	syncReq     uint64        // a Sync wants this many synced
	syncNote    chan struct{} // closed when syncedRecs grows or a sync fails; nil if nobody waits
	room        chan struct{} // closed when room is made; nil if nobody waits
	noAppends   bool          // Close: appends refused
	failed      error         // the latest write or sync failure; nil after a success
	syncStopped bool          // the syncer made its last cycle
	lost, lostB uint64        // records appended and never written: the disk failed to the end
	skipped     uint64        // records appended in this life, read back damaged and skipped (set when the feeder catches up)
	skippedB    uint64

	// The feeder's progress, under mu.
	read        spoolPos      // where the next record to feed begins
	headTime    int64         // unix nanoseconds of the record at read; 0 if unknown or none
	fedNew      atomic.Uint64 // records of this life fed: counted after each put
	feeding     atomic.Uint64 // the same, counted before each put (for Stats)
	feedingB    atomic.Uint64 // their payload bytes
	caughtUp    uint64        // 1 + the appended records the feeder had read when it last caught up with the appends; 0 before
	recovered   uint64        // records of earlier lives fed
	pendingRecB int64         // bytes at read and after, in files and buf: Stats.Bytes
	fedNote     chan struct{} // closed when the feeder moves; nil if nobody waits
	marksMu     sync.Mutex    // guards marks: taken by the feeder as it publishes, so not mu
	marks       []spoolMark   // fed records not yet settled, in runs
	damaged     uint64
	damagedB    uint64
}

// A spoolMark is a run of records fed to memory with consecutive sequence
// numbers [from, to): once they are all settled, the read position saved
// in the ledger may move to pos.
type spoolMark struct {
	from, to   uint64 // sequence numbers
	fromB, toB uint64 // the queue's payload bytes before from and before to
	pos        spoolPos
}

// unsettled counts the messages fed from the spool at sequence numbers
// from frontier on, and their bytes; settledB is the payload bytes before
// frontier.
func (s *spool) unsettled(frontier, settledB uint64) (n, b uint64) {
	s.marksMu.Lock()
	defer s.marksMu.Unlock()
	for _, m := range s.marks {
		switch {
		case m.to <= frontier:
		case m.from >= frontier:
			n, b = n+m.to-m.from, b+m.toB-m.fromB
		default:
			n, b = n+m.to-frontier, b+m.toB-settledB
		}
	}
	return n, b
}

// openSpool opens or creates the spool in dir, locked for this process.
func openSpool(cfg batchConfig) (*spool, error) {
	if cfg.spoolDir == "" {
		return nil, errors.New("conn: WithSpool needs a directory")
	}
	if err := os.MkdirAll(cfg.spoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("conn: spool: %w", err)
	}
	claim, err := claimDir(cfg.spoolDir)
	if err != nil {
		return nil, err
	}
	s := &spool{
		dir: cfg.spoolDir, claim: claim, maxBytes: cfg.spoolMax, durable: cfg.durable, every: DefaultSpoolSync,
		wakeSync: make(chan struct{}, 1), wakeFeed: make(chan struct{}, 1),
		stop: make(chan struct{}), synced: make(chan struct{}),
	}
	if cfg.durable {
		s.every = cfg.syncEvery
	}
	// An eighth of the spool, at most 64 MiB, but at least 64 KiB or half
	// the spool: a small spool still has a segment to remove while the
	// next fills.
	s.segMax = max(min(s.maxBytes/8, 64<<20), min(64<<10, s.maxBytes/2))
	s.bufMax = min(max(cfg.size/4, 256<<10), 4<<20)
	if err := s.open(); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// open locks the directory, reads the ledger, finds the segments and
// starts a new one for this life's appends.
func (s *spool) open() error {
	lf, err := openLockFile(filepath.Join(s.dir, spoolLockName))
	if errors.Is(err, ErrSpoolInUse) {
		return fmt.Errorf("%w: %s", ErrSpoolInUse, s.dir)
	}
	if err != nil {
		return fmt.Errorf("conn: spool: %w", err)
	}
	if err := lockFile(lf); err != nil {
		lf.Close()
		if errors.Is(err, ErrSpoolInUse) {
			return fmt.Errorf("%w: %s", ErrSpoolInUse, s.dir)
		}
		return fmt.Errorf("conn: spool: lock %s: %w", lf.Name(), err)
	}
	s.lockf = lf
	ids, err := s.listSegments()
	if err != nil {
		return err
	}
	next, start := uint64(1), spoolPos{seg: 1, off: segHeaderLen}
	if len(ids) > 0 {
		// A new ledger, or one cut short as it was made, points at the
		// first segment: everything there is sent.
		next, start = ids[len(ids)-1]+1, spoolPos{seg: ids[0], off: segHeaderLen}
	}
	l, err := openLedger(s.dir, start)
	if err != nil {
		return err
	}
	s.ledger = l
	pos := l.pos
	for _, id := range ids {
		name := s.segName(id)
		if id < pos.seg { // delivered; its removal was cut short
			if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("conn: spool: %w", err)
			}
			continue
		}
		size, err := checkSegment(name)
		if err != nil {
			return err
		}
		s.segs = append(s.segs, spoolSeg{id: id, end: size, sealed: true})
		s.disk += size
	}
	s.read = pos
	if len(s.segs) > 0 && s.segs[0].id != pos.seg { // the ledger's segment is gone
		s.read = spoolPos{seg: s.segs[0].id, off: segHeaderLen}
	}
	s.read.off = max(s.read.off, segHeaderLen)
	for _, g := range s.segs {
		s.pendingRecB += g.end - segHeaderLen
	}
	if len(s.segs) > 0 && s.segs[0].id == s.read.seg {
		s.pendingRecB -= min(s.read.off-segHeaderLen, s.segs[0].end-segHeaderLen)
	}
	s.pendingRecB = max(s.pendingRecB, 0)
	s.firstNew = max(next, pos.seg)
	if err := s.newSegment(s.firstNew); err != nil {
		return err
	}
	s.projectLocked() // not shared yet
	if s.pendingRecB == 0 {
		// Nothing to send: the files of earlier lives go, or every open
		// would leave one more behind.
		return s.startEmpty()
	}
	s.headTime = s.peekTime(s.read)
	return nil
}

// startEmpty points the ledger at the segment just made, the only one
// kept, when the others hold nothing to send.
func (s *spool) startEmpty() error {
	last := s.segs[len(s.segs)-1]
	s.read = spoolPos{seg: last.id, off: segHeaderLen}
	if s.ledger.pos != s.read { // it may point into a segment of that id's past
		if err := s.ledger.write(s.read); err != nil {
			return err
		}
	}
	for _, g := range s.segs[:len(s.segs)-1] {
		if err := os.Remove(s.segName(g.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("conn: spool: %w", err)
		}
		s.disk -= g.end
	}
	s.segs = []spoolSeg{last}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("conn: spool: sync %s: %w", s.dir, err)
	}
	return nil
}

// listSegments returns the ids of the segment files, in order.
func (s *spool) listSegments() ([]uint64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("conn: spool: %w", err)
	}
	var ids []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, spoolSegPrefix) || !strings.HasSuffix(name, spoolSegSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, spoolSegPrefix), spoolSegSuffix), 16, 64)
		if err != nil || name != filepath.Base(s.segName(id)) {
			continue // not a name the spool writes: not one of its files
		}
		if id == math.MaxUint64 {
			return nil, fmt.Errorf("conn: spool: %s: no segment can follow it", name)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (s *spool) segName(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s%016x%s", spoolSegPrefix, id, spoolSegSuffix))
}

// checkSegment returns the size of the segment file name, refusing one of
// a newer format. A file too short for its header (a crash as it was
// made) counts as empty.
func checkSegment(name string) (int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, fmt.Errorf("conn: spool: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("conn: spool: %w", err)
	}
	if fi.Size() < segHeaderLen {
		return segHeaderLen, nil
	}
	h := make([]byte, segHeaderLen)
	if _, err := f.ReadAt(h, 0); err != nil {
		return 0, fmt.Errorf("conn: spool: %w", err)
	}
	if err := checkSegmentHeader(name, h); errors.Is(err, ErrSpoolVersion) {
		return 0, err
	}
	return fi.Size(), nil // a bad header is reported as damage when read
}

// newSegment creates segment id, empty, and makes it the one appended to.
func (s *spool) newSegment(id uint64) error {
	f, err := os.OpenFile(s.segName(id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("conn: spool: %w", err)
	}
	if _, err := f.Write(segmentHeader()); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("conn: spool: %w", err)
	}
	if err := datasync(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("conn: spool: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		os.Remove(f.Name()) // or every later attempt would find it there
		return fmt.Errorf("conn: spool: sync %s: %w", s.dir, err)
	}
	s.mu.Lock()
	if n := len(s.segs); n > 0 {
		s.segs[n-1].sealed = true
	}
	s.segs = append(s.segs, spoolSeg{id: id, end: segHeaderLen})
	s.disk += segHeaderLen
	s.mu.Unlock()
	s.wf = f
	return nil
}

// peekTime returns the time stamp of the record at pos, or 0.
func (s *spool) peekTime(pos spoolPos) int64 {
	f, err := os.Open(s.segName(pos.seg))
	if err != nil {
		return 0
	}
	defer f.Close()
	b := make([]byte, recHeaderLen)
	if _, err := f.ReadAt(b, pos.off); err != nil {
		return 0
	}
	h, ok := parseHead(b)
	if !ok {
		return 0
	}
	return h.time
}

// maxRecord is the longest message the spool takes.
func (s *spool) maxRecord() int64 {
	return min(s.maxBytes-segHeaderLen-recHeaderLen, 1<<32-1)
}

// spoolAppend adds a record of p to the buffer. When the files hold maxBytes,
// it waits up to wait for room, else fails with ErrSpoolFull. When the
// buffer is full, it writes the buffer out itself unless the syncer is
// doing so; then it waits for that write, up to wait or spoolStall. It
// sets spilling before the record is visible: a Write that begins after
// this one returned goes to the spool too.
func (w *BatchWriter) spoolAppend(p []byte) error {
	s := w.spool
	c := recordCost(len(p))
	var deadline *time.Timer
	ownFailed := false // this append's write of the buffer failed
	for {
		s.mu.Lock()
		if s.noAppends {
			s.mu.Unlock()
			return errWriterClosed
		}
		// The record, and the header of every segment the buffer will
		// begin when it is written out (writeOut's rule): maxBytes bounds
		// the files.
		rotate := s.projEnd+c > s.segMax && s.projEnd > segHeaderLen
		rot := s.projRot + s.rotInFlight
		if rotate {
			rot++
		}
		diskRoom := s.disk+c+rot*segHeaderLen <= s.maxBytes
		if diskRoom && (len(s.buf) == 0 || len(s.buf)+int(c) <= s.bufMax) {
			w.spilling.Store(true)
			before := len(s.buf)
			if before == 0 || s.stampUses >= stampReuse {
				s.stamp, s.stampUses = time.Now().UnixNano(), 0
			}
			s.stampUses++
			now := s.stamp
			if before == 0 {
				s.bufSince = now
			}
			if s.pendingRecB == 0 {
				s.headTime = now
			}
			s.buf = appendRecord(s.buf, p, now)
			s.bufRecs++
			if rotate {
				s.projEnd, s.projRot = segHeaderLen+c, s.projRot+1
			} else {
				s.projEnd += c
			}
			s.disk += c
			s.pendingRecB += c
			s.appended++
			s.appendedB += uint64(len(p))
			batch := before < spoolWriteBatch && len(s.buf) >= spoolWriteBatch
			s.mu.Unlock()
			if before == 0 || batch { // the syncer's linger begins, or ends early
				wake(s.wakeSync)
			}
			return nil
		}
		// Announce the wait before the lock is let go: room made after it
		// must wake this append.
		var room chan struct{}
		if w.cfg.waitWhenFull > 0 || diskRoom {
			if s.room == nil {
				s.room = make(chan struct{})
			}
			room = s.room
		}
		s.mu.Unlock()
		wait := w.cfg.waitWhenFull
		if diskRoom {
			if !ownFailed && s.wmu.TryLock() {
				err := w.drainLocked()
				w.noteSpoolFailure(err)
				s.wmu.Unlock()
				if err == nil {
					continue
				}
				// The room that write made (it closed room) went with
				// the failure: wait for the syncer's next write, which
				// tries again after spoolRetry, rather than retrying at
				// once until the wait is over.
				ownFailed = true
			}
			wait = max(wait, spoolStall) // a write is under way
		}
		if wait <= 0 {
			return ErrSpoolFull
		}
		if !diskRoom { // the syncer frees files as soon as it sees a wait
			wake(s.wakeSync)
		}
		if deadline == nil {
			deadline = time.NewTimer(wait)
			defer deadline.Stop()
		}
		select {
		case <-room:
		case <-deadline.C:
			return ErrSpoolFull
		}
	}
}

// The syncer writes the buffer to its file once it holds spoolWriteBatch
// bytes, or spoolLinger after its first record was appended, whichever
// comes first (at once for a Sync or Close): a write per message would
// cost a system call each, and a millisecond is what a crash of the
// program may lose of a durable spool's messages.
const (
	spoolWriteBatch = 128 << 10
	spoolLinger     = time.Millisecond
)

// stampReuse is how many appends in a row may share a reading of the
// clock (the first of a batch always reads it): a record's time stamp is
// for SpoolStats.OldestAge, and the clock costs as much as the rest of an
// append on some machines (119 ns here under load).
const stampReuse = 256

// projectLocked computes projEnd and projRot from the last segment's end
// and the buffer, as writeOut will cut it. s.mu must be held.
func (s *spool) projectLocked() {
	end, rot := s.segs[len(s.segs)-1].end, int64(0)
	for data := s.buf; len(data) >= recHeaderLen; {
		l := recordCost(int(binary.LittleEndian.Uint32(data[4:])))
		if end+l > s.segMax && end > segHeaderLen {
			end, rot = segHeaderLen+l, rot+1
		} else {
			end += l
		}
		data = data[l:]
	}
	s.projEnd, s.projRot = end, rot
}

// lingerLeft returns how long the syncer may still leave the buffer in
// memory: 0 if it must write it now.
func (s *spool) lingerLeft() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) == 0 || len(s.buf) >= spoolWriteBatch || s.syncReq > s.syncedRecs || s.noAppends {
		return 0
	}
	return max(spoolLinger-time.Since(time.Unix(0, s.bufSince)), 0)
}

// spoolStall is how long a Write waits for a write of the spool's buffer
// under way, when the buffer is full, before it fails with ErrSpoolFull.
const spoolStall = 100 * time.Millisecond

// roomMadeLocked wakes the appends waiting for room. s.mu must be held.
func (s *spool) roomMadeLocked() {
	if s.room != nil {
		close(s.room)
		s.room = nil
	}
}

// stopAppends makes every later append fail with errWriterClosed, and
// wakes those waiting for room.
func (s *spool) stopAppends() {
	s.mu.Lock()
	s.noAppends = true
	s.roomMadeLocked()
	s.mu.Unlock()
}

// nudge wakes the syncer and the feeder.
func (s *spool) nudge() {
	wake(s.wakeSync)
	wake(s.wakeFeed)
}

// wake nudges the goroutine that waits on c, a channel of capacity 1: a
// nudge already pending is enough.
func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// failedErr is the latest write failure, or ErrSpoolFull.
func (s *spool) failedErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	return ErrSpoolFull
}

// release unlocks the directory.
func (s *spool) release() {
	if s.lockf != nil {
		s.lockf.Close()
	}
	if s.ledger != nil {
		s.ledger.f.Close()
	}
	if s.claim != nil {
		unclaimDir(s.claim)
	}
}

// stats returns the spool's part of Stats.
func (s *spool) stats() SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SpoolStats{
		Bytes: s.pendingRecB, Files: len(s.segs), DiskBytes: s.disk - int64(len(s.buf)),
		Spooled: s.appended, SpooledBytes: s.appendedB, Recovered: s.recovered,
		Damaged: s.damaged, DamagedBytes: s.damagedB, Err: s.failed,
	}
	if s.pendingRecB > 0 && s.headTime != 0 {
		st.OldestAge = max(time.Since(time.Unix(0, s.headTime)), 0)
	}
	return st
}

// skippedMessages counts the messages this BatchWriter spooled that were
// read back damaged: dropped, though never in memory.
func (s *spool) skippedMessages() (uint64, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped, s.skippedB
}

// spoolDamaged reports a damaged region of a segment.
func (w *BatchWriter) spoolDamaged(e *SpoolDamageError) {
	s := w.spool
	s.mu.Lock()
	s.damaged++
	s.damagedB += uint64(max(e.To-e.From, 0))
	s.mu.Unlock()
	w.m.log(level.WarnValue(), "spool record damaged; skipped", "file", e.File, "from", e.From, "to", e.To, "reason", e.Reason)
	w.dropped(e)
}
