package conn

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// A spoolPos is a place in the spool: a segment and a byte offset in it.
type spoolPos struct {
	seg uint64
	off int64
}

// The ledger holds the read position: where the first record not yet
// delivered begins. It has two slots, written in turn, each with a
// generation and a checksum; a crash while one is written leaves the other,
// so a reader finds either the old position or the new one.
//
//	slot: "CONNLEDG" | version uint32 | generation uint64 | segment uint64 | offset uint64 | crc32c of the 36 bytes before
const (
	ledgerSlot    = 64
	ledgerSlotLen = 40
)

type ledger struct {
	f   *os.File
	gen uint64
	pos spoolPos
}

// openLedger opens or creates the ledger in dir. A new ledger, or one
// shorter than a slot (a crash as it was made), points at start.
func openLedger(dir string, start spoolPos) (*ledger, error) {
	name := filepath.Join(dir, spoolLedgerName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("conn: spool: %w", err)
	}
	l := &ledger{f: f}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("conn: spool: %w", err)
	}
	if fi.Size() < ledgerSlotLen {
		err = l.write(start) // the directory is synced with the first segment this life makes
	} else {
		err = l.read(name)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// read finds the newest valid slot.
func (l *ledger) read(name string) error {
	buf := make([]byte, 2*ledgerSlot)
	n, err := l.f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("conn: spool: %w", err)
	}
	buf = buf[:n] // at most the two slots
	found := false
	for i := 0; i+ledgerSlotLen <= len(buf); i += ledgerSlot {
		s := buf[i : i+ledgerSlotLen]
		if [8]byte(s[:8]) != ledgerMagic || binary.LittleEndian.Uint32(s[36:]) != crc32c(s[:36]) {
			continue
		}
		if v := binary.LittleEndian.Uint32(s[8:]); v != spoolVersion {
			return fmt.Errorf("%w: %s is version %d, this build reads version %d", ErrSpoolVersion, name, v, spoolVersion)
		}
		gen := binary.LittleEndian.Uint64(s[12:])
		if !found || gen > l.gen {
			found = true
			l.gen = gen
			l.pos = spoolPos{seg: binary.LittleEndian.Uint64(s[20:]), off: int64(binary.LittleEndian.Uint64(s[28:]))}
		}
	}
	if !found {
		return fmt.Errorf("conn: spool: %s is damaged: neither slot holds a valid position (remove the directory's ledger to send every segment again)", name)
	}
	return nil
}

// write records pos in the slot not holding the current position and
// syncs it.
func (l *ledger) write(pos spoolPos) error {
	gen := l.gen + 1
	if _, err := l.f.WriteAt(ledgerSlotBytes(gen, pos), int64(gen%2)*ledgerSlot); err != nil {
		return fmt.Errorf("conn: spool: ledger: %w", err)
	}
	if err := datasync(l.f); err != nil {
		return fmt.Errorf("conn: spool: ledger: %w", err)
	}
	l.gen, l.pos = gen, pos
	return nil
}

// ledgerSlotBytes lays out a slot of generation gen holding pos.
func ledgerSlotBytes(gen uint64, pos spoolPos) []byte {
	s := make([]byte, ledgerSlotLen)
	copy(s, ledgerMagic[:])
	binary.LittleEndian.PutUint32(s[8:], spoolVersion)
	binary.LittleEndian.PutUint64(s[12:], gen)
	binary.LittleEndian.PutUint64(s[20:], pos.seg)
	binary.LittleEndian.PutUint64(s[28:], uint64(pos.off))
	binary.LittleEndian.PutUint32(s[36:], crc32c(s[:36]))
	return s
}
