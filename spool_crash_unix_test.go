//go:build unix

package conn_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// The crash tests run the spool in child processes (this test binary,
// told what to do by the environment) and kill them with SIGKILL at
// random points: while writing and syncing, while delivering (segments are
// removed behind the ledger), while replaying what an earlier child left.
// Every message a child reported synced must arrive.

const spoolChildEnv = "CONN_SPOOL_CHILD"

// TestSpoolCrashChild is the child's body; it does nothing in a normal run.
func TestSpoolCrashChild(t *testing.T) {
	mode := os.Getenv(spoolChildEnv)
	if mode == "" {
		t.Skip("run by the crash tests")
	}
	dir, addr := os.Getenv("SPOOL_DIR"), os.Getenv("SPOOL_ADDR")
	every, _ := time.ParseDuration(os.Getenv("SPOOL_EVERY"))
	m := conn.New("tcp", addr, conn.WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	defer m.Close()
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 64<<20), conn.WithDurableSpool(every),
		conn.WithWaitWhenFull(time.Minute), conn.WithCloseTimeout(time.Second))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	switch mode {
	case "write":
		round := os.Getenv("SPOOL_ROUND")
		out := bufio.NewWriter(os.Stdout)
		for i := 0; i < 5_000_000; i++ {
			if _, err := fmt.Fprintf(w, "r%s %d %s\n", round, i, strings.Repeat("z", i%50)); err != nil {
				fmt.Fprintln(out, "error", err)
				out.Flush()
				os.Exit(3)
			}
			if i%500 == 499 {
				if err := w.Sync(context.Background()); err != nil {
					fmt.Fprintln(out, "error", err)
					out.Flush()
					os.Exit(3)
				}
				fmt.Fprintln(out, "synced", i+1)
				out.Flush()
			}
		}
	case "drain":
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := w.Flush(ctx); err != nil {
			fmt.Printf("error %v; stats %+v\n", err, w.Stats())
			os.Exit(3)
		}
		fmt.Println("drained")
	}
	w.Close()
}

// lineSink collects the complete lines sent to it, every connection's.
type lineSink struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
	wg    sync.WaitGroup
}

func newLineSink(t *testing.T) *lineSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &lineSink{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil { // a cut line stays out
						return
					}
					s.mu.Lock()
					s.lines = append(s.lines, l)
					s.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// downAddress returns an address where nothing listens.
func downAddress(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// spoolChild starts this binary as a crash-test child.
func spoolChild(t *testing.T, mode, dir, addr string, every time.Duration, round int, env ...string) (*exec.Cmd, <-chan string) {
	run := "^TestSpoolCrashChild$"
	if mode == "diskfull" {
		run = "^TestSpoolDiskFullChild$"
	}
	cmd := exec.Command(os.Args[0], "-test.run="+run)
	cmd.Env = append(os.Environ(), spoolChildEnv+"="+mode, "SPOOL_DIR="+dir, "SPOOL_ADDR="+addr,
		"SPOOL_EVERY="+every.String(), "SPOOL_ROUND="+strconv.Itoa(round))
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		r := bufio.NewReader(stdout)
		for {
			l, err := r.ReadString('\n')
			if l != "" {
				lines <- strings.TrimSpace(l)
			}
			if err != nil {
				io.Copy(io.Discard, r)
				return
			}
		}
	}()
	return cmd, lines
}

func TestSpoolLosesNothingSyncedWhenKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes for several seconds")
	}
	rounds := 8
	dir := t.TempDir()
	sink := newLineSink(t)
	down := downAddress(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	synced := make([]int, rounds)
	kills := map[string]int{}
	for r := range rounds {
		// Even rounds write with the collector down (everything stays on
		// disk), odd ones with it up (segments are delivered and removed
		// while the child writes); every other pair syncs after each write.
		addr, every := down, conn.DefaultSpoolSync
		if r%2 == 1 {
			addr = sink.ln.Addr().String()
		}
		if r%4 >= 2 {
			every = 0
		}
		cmd, out := spoolChild(t, "write", dir, addr, every, r)
		killAt := time.After(time.Duration(50+rng.IntN(400)) * time.Millisecond)
		timeout := time.After(60 * time.Second)
	read:
		for {
			select {
			case l, ok := <-out:
				if !ok {
					t.Fatalf("round %d: the child ended before it was killed", r)
				}
				if n, found := strings.CutPrefix(l, "synced "); found {
					synced[r], _ = strconv.Atoi(n)
				} else if strings.HasPrefix(l, "error") {
					t.Fatalf("round %d: child: %s", r, l)
				}
			case <-killAt:
				if synced[r] == 0 { // not yet past its first sync: later
					killAt = time.After(10 * time.Millisecond)
					continue
				}
				cmd.Process.Kill()
				kills[fmt.Sprintf("writing (every %v, collector up %v)", every, r%2 == 1)]++
				break read
			case <-timeout:
				cmd.Process.Kill()
				t.Fatalf("round %d: no sync within 60 s", r)
			}
		}
		for range out { // what it printed before dying
		}
		cmd.Wait()
		if r%2 == 1 {
			// Replay what is spooled, killed part-way half of the time.
			cmd, out := spoolChild(t, "drain", dir, sink.ln.Addr().String(), conn.DefaultSpoolSync, r)
			if rng.IntN(2) == 0 {
				time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
				cmd.Process.Kill()
				kills["replaying"]++
			}
			for l := range out {
				if strings.HasPrefix(l, "error") {
					t.Fatalf("round %d: drain child: %s", r, l)
				}
			}
			cmd.Wait()
		}
	}
	// Deliver the rest here.
	m := conn.New("tcp", sink.ln.Addr().String())
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	flushWithin(t, w, 60*time.Second)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m.Close()
	sink.ln.Close() // then every connection has ended: all is read
	sink.wg.Wait()
	st := w.Stats()
	want := 0
	for _, n := range synced {
		want += n
	}
	sink.mu.Lock()
	seen := map[string]int{}
	for _, l := range sink.lines {
		seen[l]++
	}
	total := len(sink.lines)
	sink.mu.Unlock()
	lost := 0
	for r, n := range synced {
		for i := range n {
			if seen[fmt.Sprintf("r%d %d %s\n", r, i, strings.Repeat("z", i%50))] == 0 {
				if lost < 5 {
					t.Errorf("round %d: line %d, reported synced, never arrived", r, i)
				}
				lost++
			}
		}
	}
	t.Logf("%d rounds, kills %v: %d lines reported synced, %d lost; %d received, %d distinct (%d duplicates); damaged regions %d (%d bytes)",
		rounds, kills, want, lost, total, len(seen), total-len(seen), st.Spool.Damaged, st.Spool.DamagedBytes)
}
