package conn

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// readLedger opens the ledger of dir as a spool does, with start for a new
// one, and closes it.
func readLedger(t *testing.T, dir string, start spoolPos) (uint64, spoolPos) {
	t.Helper()
	l, err := openLedger(dir, start)
	if err != nil {
		t.Fatal(err)
	}
	defer l.f.Close()
	return l.gen, l.pos
}

func TestLedgerReadsTheNewestGenerationOfItsSlots(t *testing.T) {
	dir := t.TempDir()
	l, err := openLedger(dir, spoolPos{1, 16})
	if err != nil {
		t.Fatal(err)
	}
	defer l.f.Close()
	if l.gen != 1 || l.pos != (spoolPos{1, 16}) {
		t.Fatalf("a new ledger: generation %d at %v, want 1 at {1 16}", l.gen, l.pos)
	}
	for i, pos := range []spoolPos{{2, 16}, {2, 500}, {3, 16}} {
		if err := l.write(pos); err != nil {
			t.Fatal(err)
		}
		// The newer slot alternates: the second slot, then the first...
		if gen, got := readLedger(t, dir, spoolPos{9, 9}); gen != uint64(i+2) || got != pos {
			t.Errorf("after writing %v: read generation %d at %v, want %d at %v", pos, gen, got, i+2, pos)
		}
	}
}

func TestLedgerWithASlotTornReadsTheOther(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, spoolLedgerName)
	for _, c := range []struct {
		name string
		tear int64 // a byte of the newer slot
	}{{"the first slot", 30}, {"the second slot", ledgerSlot + 30}} {
		t.Run(c.name, func(t *testing.T) {
			old, newer := ledgerSlotBytes(4, spoolPos{4, 16}), ledgerSlotBytes(5, spoolPos{5, 16})
			b := make([]byte, 2*ledgerSlot)
			if c.tear < ledgerSlot {
				copy(b, newer)
				copy(b[ledgerSlot:], old)
			} else {
				copy(b, old)
				copy(b[ledgerSlot:], newer)
			}
			b[c.tear] ^= 1
			if err := os.WriteFile(name, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if gen, pos := readLedger(t, dir, spoolPos{9, 9}); gen != 4 || pos != (spoolPos{4, 16}) {
				t.Errorf("read generation %d at %v, want the other slot: 4 at {4 16}", gen, pos)
			}
		})
	}
}

func TestLedgerOfOneSlotIsRead(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, spoolLedgerName)
	slot := ledgerSlotBytes(2, spoolPos{7, 100})
	if err := os.WriteFile(name, slot, 0o600); err != nil {
		t.Fatal(err)
	}
	if gen, pos := readLedger(t, dir, spoolPos{1, 16}); gen != 2 || pos != (spoolPos{7, 100}) {
		t.Errorf("a ledger of one slot: generation %d at %v, want 2 at {7 100}", gen, pos)
	}
	// Shorter than a slot: a crash as it was made, a new ledger.
	if err := os.WriteFile(name, slot[:ledgerSlotLen-1], 0o600); err != nil {
		t.Fatal(err)
	}
	if gen, pos := readLedger(t, dir, spoolPos{1, 16}); gen != 1 || pos != (spoolPos{1, 16}) {
		t.Errorf("a ledger shorter than a slot: generation %d at %v, want 1 at the start {1 16}", gen, pos)
	}
}

// A second slot cut short is not read, even when what is missing are
// zeros that would complete it: its last byte here.
func TestLedgerIgnoresASlotCutShort(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, spoolLedgerName)
	var newer []byte
	for off := int64(16); ; off++ {
		if newer = ledgerSlotBytes(3, spoolPos{3, off}); newer[ledgerSlotLen-1] == 0 {
			break
		}
	}
	b := make([]byte, ledgerSlot+ledgerSlotLen)
	copy(b, ledgerSlotBytes(2, spoolPos{2, 16}))
	copy(b[ledgerSlot:], newer)
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if gen, _ := readLedger(t, dir, spoolPos{9, 9}); gen != 3 {
		t.Fatalf("whole, the second slot is not read: generation %d, want 3", gen)
	}
	if err := os.Truncate(name, int64(len(b)-1)); err != nil {
		t.Fatal(err)
	}
	if gen, pos := readLedger(t, dir, spoolPos{9, 9}); gen != 2 || pos != (spoolPos{2, 16}) {
		t.Errorf("with the second slot cut short: generation %d at %v, want the first slot, 2 at {2 16}", gen, pos)
	}
}

// A ledger slot is laid out as the format says (spoolledger.go): magic,
// version, generation, segment, offset, and the CRC32C of the 36 bytes
// before it, little-endian. A change here is a new format version.
func TestLedgerSlotLayoutIsTheFormats(t *testing.T) {
	s := ledgerSlotBytes(0x0102030405060708, spoolPos{seg: 0x1112131415161718, off: 0x2122232425262728})
	want := append([]byte("CONNLEDG"), 1, 0, 0, 0,
		8, 7, 6, 5, 4, 3, 2, 1,
		0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
		0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21)
	want = binary.LittleEndian.AppendUint32(want, crc32.Checksum(want, crc32.MakeTable(crc32.Castagnoli)))
	if !bytes.Equal(s, want) {
		t.Errorf("slot\n%x, want\n%x", s, want)
	}
}
