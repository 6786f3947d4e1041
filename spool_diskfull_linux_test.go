package conn_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// TestSpoolDiskFullChild writes into a spool under RLIMIT_FSIZE, which
// makes a write past the limit fail part-way (EFBIG) as a full disk does
// (ENOSPC). It does nothing in a normal run.
func TestSpoolDiskFullChild(t *testing.T) {
	if os.Getenv(spoolChildEnv) != "diskfull" {
		t.Skip("run by TestSpoolOnAFullDiskKeepsWhatItSynced")
	}
	signal.Ignore(syscall.SIGXFSZ) // a failed write, not a dead process
	limit, _ := strconv.ParseUint(os.Getenv("SPOOL_LIMIT"), 10, 64)
	var was syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_FSIZE, &was)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: was.Max}); err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	m := conn.New("tcp", os.Getenv("SPOOL_ADDR"))
	defer m.Close()
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(os.Getenv("SPOOL_DIR"), 64<<20), conn.WithDurableSpool(0),
		conn.WithCloseTimeout(100*time.Millisecond))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	written := 0
	for ; written < 1_000_000; written++ {
		if _, err := fmt.Fprintf(w, "full %d\n", written); err != nil {
			fmt.Println("write failed", written, err)
			break
		}
		if written%100 == 99 {
			if err := w.Sync(context.Background()); err != nil {
				fmt.Println("sync failed", err)
				written++
				break
			}
			fmt.Println("synced", written+1)
		}
	}
	fmt.Printf("spool error: %v\n", w.Stats().Spool.Err)
	// Room again: what waited in memory is written and synced.
	syscall.Setrlimit(syscall.RLIMIT_FSIZE, &was)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Sync(ctx); err != nil && !strings.Contains(err.Error(), "too large") {
		fmt.Println("error", err)
		os.Exit(3)
	}
	for w.Sync(ctx) != nil && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // the spool tries again every 250 ms
	}
	fmt.Println("synced after", written, w.Stats().Spool.Err)
	fmt.Printf("close: %v\n", w.Close())
}

func TestSpoolOnAFullDiskKeepsWhatItSynced(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process (this binary, which qemu-user cannot start again)")
	}
	dir := t.TempDir()
	cmd, out := spoolChild(t, "diskfull", dir, downAddress(t), 0, 0, "SPOOL_LIMIT=300000")
	synced, after, spoolErr, closeErr := 0, 0, "", ""
	timeout := time.After(60 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-out:
			if !ok {
				done = true
				break
			}
			switch {
			case strings.HasPrefix(l, "synced after "):
				after, _ = strconv.Atoi(strings.Fields(l)[2])
			case strings.HasPrefix(l, "synced "):
				synced, _ = strconv.Atoi(strings.TrimPrefix(l, "synced "))
			case strings.HasPrefix(l, "close: "):
				closeErr = l
			case strings.HasPrefix(l, "spool error: "):
				spoolErr = l
			case strings.HasPrefix(l, "error"):
				t.Fatal(l)
			default:
				t.Log(l)
			}
		case <-timeout:
			cmd.Process.Kill()
			t.Fatal("the child still writes after 60 s")
		}
	}
	cmd.Wait()
	if synced < 1000 || !strings.Contains(spoolErr, "file too large") {
		t.Fatalf("child synced %d lines; %s: want a few thousand, then the file system's error", synced, spoolErr)
	}
	if after <= synced || closeErr != "close: <nil>" {
		t.Fatalf("with room again, synced %d lines (%d before), %s", after, synced, closeErr)
	}
	// No record cut by the failed write is read back.
	got, st, _, _ := deliverSpool(t, dir, 64<<20)
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != after {
		t.Fatalf("delivered %d lines, want the %d written", len(lines), after)
	}
	for i, l := range lines {
		if l != "full "+strconv.Itoa(i) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
	if st.Spool.Damaged != 0 {
		t.Errorf("%d damaged regions: the failed write was not undone", st.Spool.Damaged)
	}
}
