package conn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The spool's files (see WithSpool). A segment file is a header, then
// records back to back:
//
//	header: "CONNSPOL" | version uint32 | crc32c of the 12 bytes before
//	record: hcrc uint32 | length uint32 | unix nanoseconds int64 | pcrc uint32 | payload
//
// hcrc is the CRC32C of the 16 header bytes after it, pcrc that of the
// payload; all integers little-endian. Two checksums let a reader that
// meets damage find the next record: a candidate header is checked on its
// own 16 bytes before a length read from damage is trusted, so a search
// through garbage costs a small checksum per byte, not one per claimed
// length.

const (
	spoolVersion    = 1
	segHeaderLen    = 16
	recHeaderLen    = 20
	spoolSegPrefix  = "seg-"
	spoolSegSuffix  = ".spool"
	spoolLedgerName = "ledger"
	spoolLockName   = "lock"
)

var (
	segMagic    = [8]byte{'C', 'O', 'N', 'N', 'S', 'P', 'O', 'L'}
	ledgerMagic = [8]byte{'C', 'O', 'N', 'N', 'L', 'E', 'D', 'G'}
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

// ErrSpoolVersion is matched by the error of opening a spool whose files
// were written by a newer format than this build reads. Nothing in the
// directory is changed.
var ErrSpoolVersion = errors.New("conn: spool written by a newer format")

func crc32c(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// segmentHeader returns the header of a new segment file.
func segmentHeader() []byte {
	h := make([]byte, segHeaderLen)
	copy(h, segMagic[:])
	binary.LittleEndian.PutUint32(h[8:], spoolVersion)
	binary.LittleEndian.PutUint32(h[12:], crc32c(h[:12]))
	return h
}

// checkSegmentHeader says whether h (segHeaderLen bytes) is a segment
// header this build reads.
func checkSegmentHeader(name string, h []byte) error {
	if len(h) < segHeaderLen || [8]byte(h[:8]) != segMagic || binary.LittleEndian.Uint32(h[12:]) != crc32c(h[:12]) {
		return fmt.Errorf("conn: spool file %s: not a spool segment (bad header)", name)
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != spoolVersion {
		return fmt.Errorf("%w: %s is version %d, this build reads version %d", ErrSpoolVersion, name, v, spoolVersion)
	}
	return nil
}

// appendRecord appends p as a record stamped at unix nanoseconds t. The
// header is made in place: a local array would escape (the checksum is an
// indirect call) and cost an allocation per message.
func appendRecord(dst, p []byte, t int64) []byte {
	at := len(dst)
	dst = append(dst, make([]byte, recHeaderLen)...)
	h := dst[at:]
	binary.LittleEndian.PutUint32(h[4:], uint32(len(p)))
	binary.LittleEndian.PutUint64(h[8:], uint64(t))
	binary.LittleEndian.PutUint32(h[16:], crc32c(p))
	binary.LittleEndian.PutUint32(h[0:], crc32c(h[4:recHeaderLen]))
	return append(dst, p...)
}

// A recordHead is a record's header, read.
type recordHead struct {
	n    int   // payload bytes
	time int64 // unix nanoseconds when it was spooled
	pcrc uint32
}

// parseHead reads the record header at the start of b, which holds at
// least recHeaderLen bytes; ok is false if its checksum does not match.
func parseHead(b []byte) (h recordHead, ok bool) {
	if binary.LittleEndian.Uint32(b) != crc32c(b[4:recHeaderLen]) {
		return h, false
	}
	h.n = int(binary.LittleEndian.Uint32(b[4:]))
	h.time = int64(binary.LittleEndian.Uint64(b[8:]))
	h.pcrc = binary.LittleEndian.Uint32(b[16:])
	return h, h.n >= 0
}

// peekHead reads the record header at the start of b, which holds at
// least recHeaderLen bytes, without checking it.
func peekHead(b []byte) recordHead {
	return recordHead{
		n:    int(binary.LittleEndian.Uint32(b[4:])),
		time: int64(binary.LittleEndian.Uint64(b[8:])),
		pcrc: binary.LittleEndian.Uint32(b[16:]),
	}
}

// recordCost is what a record of n payload bytes takes on disk.
func recordCost(n int) int64 { return int64(n) + recHeaderLen }
