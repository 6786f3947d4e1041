package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Verdicts.
const (
	killed     = "KILLED"
	timedOut   = "TIMED OUT" // killed: a test hung
	lived      = "LIVED"
	notCovered = "NOT COVERED" // no test reaches the token: lived without a run
	notViable  = "NOT VIABLE"  // does not compile
	buildError = "BUILD ERROR" // the build failed elsewhere than in the mutant: no verdict
)

// A runResult is how one run of a test binary ended: status "" (every test
// passed), killed or timedOut, with the first failing (or hanging) test.
type runResult struct {
	status string
	killer string
	output string
	took   time.Duration
	pid    int
	err    error // the binary could not be run at all
}

var (
	failLine = regexp.MustCompile(`(?m)^--- FAIL: (\S+)`)
	endLine  = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+)`)
	// testing's alarm: "panic: test timed out after 15s\nrunning tests:\n\tTestX (15s)".
	timeoutPanic = regexp.MustCompile(`(?m)^panic: test timed out after [^\n]*(?:\n\s*running tests:\n\s+(\S+))?`)
)

// runTests runs a test binary (with -test.v) in dir, in a process group of
// its own, with the binary's own -test.timeout at timeout (it then names
// the test that hung) and the whole group killed 10 seconds later if it is
// still there. With stall > 0, the group is also killed (timed out) when
// the tests print nothing for that long: -test.v prints a line as each
// test starts and ends, so a test stuck for many times its usual duration
// is found without waiting for the timeout of the whole run. The group is
// killed as soon as a top-level test fails: -test.failfast does not stop
// examples, nor cleanups or the leak check that may hang after a failure.
func runTests(ctx context.Context, bin, dir string, env, args []string, timeout, stall time.Duration) runResult {
	out, err := os.CreateTemp("", "mutate-out")
	if err != nil {
		return runResult{err: err}
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.Command(bin, append(args, "-test.v", "-test.timeout="+timeout.String())...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return runResult{err: err}
	}
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	hard := time.NewTimer(timeout + 10*time.Second)
	defer hard.Stop()
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	var (
		werr     error
		killedBy string // why the group was killed: "" (it was not), "hard", "stall"
		failed   string // the first top-level test seen failing
		running  []string
		offset   int64
		partial  []byte
		buf      = make([]byte, 64<<10)
		progress = start
	)
	// scan reads what the tests printed since the last call: the tests
	// under way, and the first top-level failure.
	scan := func() {
		for failed == "" {
			n, _ := out.ReadAt(buf, offset)
			if n == 0 {
				return
			}
			offset += int64(n)
			progress = time.Now()
			partial = append(partial, buf[:n]...)
			i := bytes.LastIndexByte(partial, '\n')
			if i < 0 {
				continue
			}
			for _, l := range strings.Split(string(partial[:i]), "\n") {
				if name, ok := strings.CutPrefix(l, "=== RUN   "); ok && !strings.Contains(name, "/") {
					running = append(running, name)
				} else if m := endLine.FindStringSubmatch(l); m != nil {
					if j := slices.Index(running, m[2]); j >= 0 {
						running = slices.Delete(running, j, j+1)
					}
					if m[1] == "FAIL" && failed == "" {
						failed = m[2]
					}
				}
			}
			partial = append(partial[:0], partial[i+1:]...)
		}
	}
wait:
	for {
		select {
		case werr = <-waited:
			break wait
		case <-poll.C:
			if scan(); failed != "" || stall > 0 && time.Since(progress) > stall {
				if failed == "" {
					killedBy = "stall"
				}
				syscall.Kill(-pgid, syscall.SIGKILL)
				werr = <-waited
				break wait
			}
		case <-hard.C:
			killedBy = "hard"
			syscall.Kill(-pgid, syscall.SIGKILL)
			werr = <-waited
			break wait
		case <-ctx.Done():
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-waited
			return runResult{err: ctx.Err()}
		}
	}
	// Whatever the tests started and left behind goes with them.
	syscall.Kill(-pgid, syscall.SIGKILL)
	scan() // what the tests printed last
	res := runResult{took: time.Since(start), pid: pgid}
	b, _ := os.ReadFile(out.Name())
	res.output = string(b)
	under := "(no test under way)"
	if len(running) > 0 {
		under = running[len(running)-1]
	}
	var exit *exec.ExitError
	switch {
	case failed != "":
		res.status, res.killer = killed, failed
	case werr == nil:
		return res
	case killedBy == "stall":
		res.status, res.killer = timedOut, under+" (silent for "+stall.String()+")"
	case killedBy == "hard":
		res.status, res.killer = timedOut, under+" (killed after "+(timeout+10*time.Second).String()+")"
	case errors.As(werr, &exit):
		if m := timeoutPanic.FindStringSubmatch(res.output); m != nil {
			res.status, res.killer = timedOut, m[1]
			if m[1] == "" {
				res.killer = under
			}
		} else if m := failLine.FindStringSubmatch(res.output); m != nil {
			res.status, res.killer = killed, m[1]
		} else if strings.Contains(res.output, "goleak") {
			res.status, res.killer = killed, "TestMain (goleak)"
		} else {
			res.status, res.killer = killed, under+" ("+werr.Error()+")"
		}
	default:
		res.err = werr
	}
	return res
}

// splitAbove is the least total duration of a wave split over processes.
const splitAbove = 4 * time.Second

// ldflags are those of every build of a mutant: no symbol table, no DWARF
// (a faster link; stack traces still name functions and lines).
const ldflags = "-s -w"

// timeoutFor bounds a run of tests that took total when gathering coverage.
func (r *runner) timeoutFor(total time.Duration) time.Duration {
	return max(r.minTimeout, time.Duration(float64(total)*r.timeoutFactor)).Round(time.Second)
}

// stallFor bounds how long a run whose slowest test took slowest may go
// without printing anything; 0 (no bound) if -stall is 0.
func (r *runner) stallFor(slowest time.Duration) time.Duration {
	if r.stall <= 0 {
		return 0
	}
	return max(r.stall, time.Duration(float64(slowest)*r.timeoutFactor))
}

// waves splits tests (fastest first) into runs: a run ends once it has
// taken as long as all the runs before it together (at least a second), so
// a test that kills is reached about as soon as running the tests one by
// one would reach it, with a handful of processes instead of hundreds.
// go test runs a process's tests in source order, not in the order given.
func waves(tests []int, dur func(int) time.Duration) [][]int {
	var (
		out        [][]int
		cur        []int
		sum, spent time.Duration
	)
	for _, t := range tests {
		cur = append(cur, t)
		sum += dur(t)
		if sum >= max(time.Second, spent) {
			out = append(out, cur)
			spent += sum
			cur, sum = nil, 0
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// judge builds the package's tests with m applied (an overlay over the
// package's snapshot; no copy of the module, and the build cache shared)
// and runs the tests that reach it, fastest first, until one fails.
func (r *runner) judge(ctx context.Context, p *pkgInfo, m *mutant, work string) {
	start := time.Now()
	defer func() { m.Seconds = time.Since(start).Seconds() }()
	if m.schemaID > 0 && p.schemaBin != "" {
		// In the schema binary: nothing to build.
		m.InSchema = true
		r.runJudged(ctx, p, m, p.schemaBin, r.schemaEnv(p, m.schemaID))
		return
	}
	mutated, err := apply(p.files[m.absFile], m)
	if err != nil {
		m.Status, m.Detail = notViable, err.Error()
		return
	}
	src := filepath.Join(work, filepath.Base(m.absFile))
	if err := os.WriteFile(src, mutated, 0o644); err != nil {
		m.Status, m.Detail = "ERROR", err.Error()
		return
	}
	ov := map[string]string{}
	for k, v := range p.snapshot {
		ov[k] = v
	}
	ov[m.absFile] = src
	ovPath := filepath.Join(work, "overlay.json")
	b, _ := json.Marshal(map[string]any{"Replace": ov})
	if err := os.WriteFile(ovPath, b, 0o644); err != nil {
		m.Status, m.Detail = "ERROR", err.Error()
		return
	}
	bin := filepath.Join(work, "mutant.test")
	env := r.testEnv([]string{"GOFLAGS=" + strings.TrimSpace(os.Getenv("GOFLAGS")+" -overlay="+ovPath)})
	relinked := false
	if p.rl != nil && !p.rl.inInlinable(m) {
		compileErr, ok, err := p.rl.build(ctx, m.absFile, p.snapshot[m.absFile], src, work, bin)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				m.Status, m.Detail = "ERROR", err.Error()
			}
			return
		case compileErr != "":
			m.Build = time.Since(start).Seconds()
			m.Status, m.Detail = notViable, firstLines(compileErr, 3)
			return
		}
		relinked = ok
	}
	if !relinked {
		build := exec.CommandContext(ctx, "go", "test", "-c", "-vet=off", "-ldflags="+ldflags, "-overlay="+ovPath, "-o", bin, p.Dir)
		build.Dir = r.moduleDir
		out, err := build.CombinedOutput()
		if err != nil {
			m.Build = time.Since(start).Seconds()
			if ctx.Err() != nil {
				return
			}
			m.Status, m.Detail = notViable, firstLines(string(out), 3)
			if !strings.Contains(string(out), filepath.Base(m.absFile)+":") {
				// Not the mutant's doing: a file that appeared in the
				// package after the snapshot, say.
				m.Status = buildError
			}
			return
		}
	}
	m.Build, m.Relinked = time.Since(start).Seconds(), relinked
	// A binary the tests build themselves (connpipe's end-to-end tests run
	// "go build") is built with the mutant too: env's GOFLAGS.
	r.runJudged(ctx, p, m, bin, env)
}

// runJudged runs m's tests with bin and records the verdict.
func (r *runner) runJudged(ctx context.Context, p *pkgInfo, m *mutant, bin string, env []string) {
	dur := func(i int) time.Duration { return p.cov.Tests[i].Duration }
	for _, wave := range waves(m.covered, dur) {
		res, split := r.runWave(ctx, p, bin, env, wave, dur, &m.Runs, r.procs)
		if k, ok := p.testIndex[testOf(res.killer)]; ok && res.status != "" && res.err == nil && (split || dur(k) >= time.Second) {
			// A socket scenario that failed while other tests ran beside
			// it may have failed for want of CPU: it must fail again alone,
			// once in two tries, or the wave is run again in one process.
			if !r.confirm(ctx, p, bin, env, k, dur, &m.Runs) && ctx.Err() == nil {
				m.Flaky = append(m.Flaky, p.cov.Tests[k].Name)
				res, _ = r.runWave(ctx, p, bin, env, wave, dur, &m.Runs, 1)
			}
		}
		if res.err != nil {
			if ctx.Err() == nil {
				m.Status, m.Detail = "ERROR", res.err.Error()
			}
			return
		}
		if res.status != "" {
			m.Status, m.Killer = res.status, res.killer
			m.Detail = failureDetail(res.output, res.killer)
			return
		}
	}
	m.Status = lived
}

// runWave runs the tests of one wave: in one process, or, when they take
// a while, split over -procs processes at once (the suite waits on timers
// and sockets far more than it computes: 67 s for 26 s of CPU, in one
// process). The first failure (or hang) stops the others.
func (r *runner) runWave(ctx context.Context, p *pkgInfo, bin string, env []string, wave []int, dur func(int) time.Duration, runs *int, procs int) (res runResult, split bool) {
	var sum time.Duration
	for _, i := range wave {
		sum += dur(i)
	}
	parts := [][]int{wave}
	if procs > 1 && sum >= splitAbove && len(wave) > 1 {
		// The longest first, each to the part with the least so far.
		parts = make([][]int, min(procs, len(wave)))
		load := make([]time.Duration, len(parts))
		for k := len(wave) - 1; k >= 0; k-- { // wave is fastest first
			j := 0
			for x := range load {
				if load[x] < load[j] {
					j = x
				}
			}
			parts[j] = append(parts[j], wave[k])
			load[j] += dur(wave[k])
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan runResult, len(parts))
	for _, part := range parts {
		var names []string
		var psum, slowest, building time.Duration
		for _, i := range part {
			names = append(names, p.cov.Tests[i].Name)
			psum += dur(i)
			slowest = max(slowest, dur(i))
			building = max(building, r.building(p, i))
		}
		*runs++
		go func() {
			results <- runTests(wctx, bin, p.Dir, env, []string{
				"-test.run", "^(" + strings.Join(names, "|") + ")$", "-test.failfast", "-test.count=1",
			}, r.timeoutFor(psum)+building, r.stallFor(slowest)+building)
		}()
	}
	var first runResult
	for range parts {
		res := <-results
		if first.status == "" && first.err == nil && (res.status != "" || res.err != nil && ctx.Err() == nil && wctx.Err() == nil) {
			first = res
			cancel() // the others are killed: their verdict no longer matters
		}
	}
	return first, len(parts) > 1
}

// confirm runs test i alone, up to twice, and reports whether it failed
// (or hung) once.
func (r *runner) confirm(ctx context.Context, p *pkgInfo, bin string, env []string, i int, dur func(int) time.Duration, runs *int) bool {
	for range 2 {
		*runs++
		res := runTests(ctx, bin, p.Dir, env, []string{
			"-test.run", "^" + p.cov.Tests[i].Name + "$", "-test.failfast", "-test.count=1",
		}, r.timeoutFor(dur(i))+r.building(p, i), r.stallFor(dur(i))+r.building(p, i))
		if res.status != "" || res.err != nil {
			return true
		}
	}
	return false
}

// building is the extra time test i is given when it builds the package
// itself (go build under the test): silent all along, and longer with a
// mutant than in the coverage runs, whose builds were cached.
func (r *runner) building(p *pkgInfo, i int) time.Duration {
	if !p.cov.Tests[i].RanBinary {
		return 0
	}
	return time.Duration(float64(p.childBuild) * r.timeoutFactor)
}

// testOf returns the test a killer names ("TestX (silent for 3s)": TestX).
func testOf(killer string) string {
	name, _, _ := strings.Cut(killer, " ")
	return name
}

// failureDetail picks a few lines of output that say why the killer failed:
// the last messages a test printed before its failure was reported, and
// the report, or the panic.
func failureDetail(out, killer string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "panic: ") {
			return firstLines(strings.Join(lines[i:], "\n"), 8)
		}
		if strings.HasPrefix(l, "--- FAIL: "+killer) {
			var msgs []string
			for j := i - 1; j >= 0 && len(msgs) < 4; j-- {
				if testMessage.MatchString(lines[j]) {
					msgs = append([]string{strings.TrimSpace(lines[j])}, msgs...)
				}
			}
			return firstLines(strings.Join(append(msgs, lines[i:]...), "\n"), 8)
		}
	}
	return firstLines(tail(out, 8), 8)
}

var testMessage = regexp.MustCompile(`^\s+\S+_test\.go:\d+: `)

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	s = strings.Join(lines, "\n")
	if len(s) > 600 {
		s = s[:600]
	}
	return s
}
