package conn

import "testing"

// The drop report counts the spool's damaged regions since the previous
// report, and their bytes; a report with damage and nothing else dropped
// is made too.
func TestDropReportCountsDamageSinceThePreviousReport(t *testing.T) {
	s := &spool{}
	var reps []DropReport
	w := &BatchWriter{m: &Manager{cfg: defaultConfig()}, spool: s}
	w.cfg.dropHook = func(r DropReport) { reps = append(reps, r) }

	s.damaged, s.damagedB = 1, 100
	w.stats.Discarded, w.discardedBytes = 1, 10
	w.reportDrops()
	s.damaged, s.damagedB = 3, 250
	w.reportDrops()
	w.reportDrops() // nothing new: no report
	if len(reps) != 2 {
		t.Fatalf("%d reports, want 2: %+v", len(reps), reps)
	}
	if r := reps[0]; r.Rejected != 0 || r.Discarded != 1 || r.Bytes != 10 || r.Damaged != 1 || r.DamagedBytes != 100 {
		t.Errorf("first report %+v; want 1 discarded (10 bytes), 1 damaged (100 bytes)", r)
	}
	if r := reps[1]; r.Rejected != 0 || r.Discarded != 0 || r.Bytes != 0 || r.Damaged != 2 || r.DamagedBytes != 150 {
		t.Errorf("second report %+v; want 2 damaged (150 bytes) alone", r)
	}
}
