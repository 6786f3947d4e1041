package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A testInfo is one top-level test (or example, or fuzz target's seeds) of
// the package, as the coverage run found it.
type testInfo struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration"`
	Failed   bool          `json:"failed,omitempty"`
	// Opaque: the test ran a binary built from the package that ended
	// without writing its coverage (killed, or by a signal): what it
	// reached is unknown, so it counts as reaching every token.
	Opaque bool `json:"opaque,omitempty"`
	// RanBinary: the test ran a binary built from the package (go build
	// under the test): with a mutant, that build compiles it again.
	RanBinary bool   `json:"ran_binary,omitempty"`
	Output    string `json:"output,omitempty"` // the end of a failing run's output
}

// A block is a cover block: a range of a file, and the tests that ran it
// (none if no test did).
type block struct {
	SL, SC, EL, EC int
	Tests          []int
}

func (b block) contains(line, col int) bool {
	return (line > b.SL || line == b.SL && col >= b.SC) && (line < b.EL || line == b.EL && col <= b.EC)
}

func (b block) within(sl, sc, el, ec int) bool {
	return (b.SL > sl || b.SL == sl && b.SC >= sc) && (b.EL < el || b.EL == el && b.EC <= ec)
}

// coverageMap is what gathering coverage test by test yields for one
// package; it is cached as JSON.
type coverageMap struct {
	Tests  []testInfo         `json:"tests"`
	Blocks map[string][]block `json:"blocks"` // by file name (base)
	Took   time.Duration      `json:"took"`
}

var testName = regexp.MustCompile(`^(Test|Example|Fuzz)\w*$`)

// gatherCoverage builds the package's test binary with coverage once, and
// runs each top-level test alone, workers at a time, in the package's
// directory. Tests that run a binary the go command builds (connpipe's
// end-to-end tests) get it built with coverage too, through GOFLAGS, and
// its counters written to GOCOVERDIR are added to the test's.
func gatherCoverage(ctx context.Context, r *runner, p *pkgInfo) (*coverageMap, error) {
	start := time.Now()
	dir := filepath.Join(r.tmp, "cover-"+p.short)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// A package of the module that the package imports gets one more file:
	// every process that runs it notes its pid, so that a binary that ended
	// without writing its coverage can be told from one that never ran.
	// (Not the package itself: go build -cover reads the files it
	// instruments from the disk, overlay or not.)
	ov := map[string]string{}
	for k, v := range p.snapshot {
		ov[k] = v
	}
	if p.markerDir != "" {
		marker := filepath.Join(dir, "zz_mutate_starts.go")
		if err := os.WriteFile(marker, []byte(fmt.Sprintf(startsFile, p.markerName)), 0o644); err != nil {
			return nil, err
		}
		ov[filepath.Join(p.markerDir, "zz_mutate_starts.go")] = marker
	}
	overlay := filepath.Join(dir, "overlay.json")
	b, _ := json.Marshal(map[string]any{"Replace": ov})
	if err := os.WriteFile(overlay, b, 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "cover.test")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-vet=off", "-cover", "-covermode=count",
		"-coverpkg="+p.ImportPath, "-overlay="+overlay, "-o", bin, p.Dir)
	build.Dir = r.moduleDir
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s's tests with coverage: %v\n%s", p.ImportPath, err, out)
	}
	list := exec.CommandContext(ctx, bin, "-test.list", ".*")
	list.Dir = p.Dir
	list.Env = r.testEnv(nil)
	out, err := list.Output()
	if err != nil {
		return nil, fmt.Errorf("listing %s's tests: %v", p.ImportPath, err)
	}
	cm := &coverageMap{Blocks: map[string][]block{}}
	for _, l := range strings.Split(string(out), "\n") {
		if testName.MatchString(l) {
			cm.Tests = append(cm.Tests, testInfo{Name: l})
		}
	}
	fmt.Printf("%s: coverage of %d tests, one at a time, %d at once\n", p.ImportPath, len(cm.Tests), r.workers)

	// covered[file][range] -> tests
	type rng struct{ sl, sc, el, ec int }
	var (
		mu      sync.Mutex
		covered = map[string]map[rng][]int{}
		wg      sync.WaitGroup
		next    = make(chan int)
		errs    []error
	)
	addProfile := func(i int, path string) error {
		f, err := os.Open(path)
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		mu.Lock()
		defer mu.Unlock()
		for sc.Scan() {
			file, r, count, ok := parseProfileLine(sc.Text())
			if !ok || !strings.HasPrefix(file, p.ImportPath+"/") || strings.Contains(file[len(p.ImportPath)+1:], "/") {
				continue
			}
			file = file[len(p.ImportPath)+1:]
			k := rng{r[0], r[1], r[2], r[3]}
			if covered[file] == nil {
				covered[file] = map[rng][]int{}
			}
			t := covered[file][k]
			if count > 0 && (len(t) == 0 || t[len(t)-1] != i) {
				t = append(t, i)
			}
			covered[file][k] = t
		}
		return sc.Err()
	}
	done := 0
	for w := 0; w < r.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := &cm.Tests[i]
				prof := filepath.Join(dir, fmt.Sprintf("t%d.out", i))
				gocover := filepath.Join(dir, fmt.Sprintf("t%d.covdata", i))
				starts := filepath.Join(dir, fmt.Sprintf("t%d.starts", i))
				if err := errors.Join(os.MkdirAll(gocover, 0o755), os.MkdirAll(starts, 0o755)); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				env := r.testEnv([]string{
					"GOCOVERDIR=" + gocover,
					"MUTATE_STARTS=" + starts,
					"GOFLAGS=" + strings.TrimSpace(os.Getenv("GOFLAGS")+" -cover -covermode=count -coverpkg="+p.ImportPath+" -overlay="+overlay),
				})
				res := runTests(ctx, bin, p.Dir, env, []string{
					"-test.run", "^" + t.Name + "$", "-test.count=1",
					"-test.coverprofile=" + prof,
				}, r.coverTimeout, 0)
				t.Duration = res.took
				if res.err != nil {
					mu.Lock()
					errs = append(errs, res.err)
					mu.Unlock()
					continue
				}
				if res.status != "" {
					t.Failed = true
					t.Output = tail(res.output, 30)
				} else {
					err := addProfile(i, prof)
					if err == nil {
						err = addCovdata(ctx, i, gocover, dir, addProfile)
					}
					if err == nil {
						t.Opaque, t.RanBinary, err = unwritten(starts, gocover, res.pid)
					}
					if err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
				os.RemoveAll(gocover)
				os.RemoveAll(starts)
				os.Remove(prof)
				mu.Lock()
				done++
				state := "ok"
				if t.Failed {
					state = "FAILED: " + res.status + " " + res.killer
				} else if t.Opaque {
					state = "ok, but a binary it ran wrote no coverage: reaches everything"
				}
				if r.verbose || t.Failed {
					fmt.Printf("  [%d/%d] %-60s %6.2fs %s\n", done, len(cm.Tests), t.Name, t.Duration.Seconds(), state)
				}
				mu.Unlock()
			}
		}()
	}
	// The slowest first would pack the workers best, but nothing is known
	// yet; the list order is the source order.
feed:
	for i := range cm.Tests {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, errs[0]
	}
	for file, rs := range covered {
		for k, tests := range rs {
			slices.Sort(tests)
			cm.Blocks[file] = append(cm.Blocks[file], block{k.sl, k.sc, k.el, k.ec, tests})
		}
		slices.SortFunc(cm.Blocks[file], func(a, b block) int {
			if a.SL != b.SL {
				return a.SL - b.SL
			}
			return a.SC - b.SC
		})
	}
	cm.Took = time.Since(start)
	return cm, nil
}

// addCovdata adds the counters that binaries built with -cover (by the
// test, through GOFLAGS) wrote to dir, if any.
func addCovdata(ctx context.Context, i int, dir, tmp string, add func(int, string) error) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	counters := false
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "covcounters.") {
			counters = true
		}
	}
	if !counters {
		return nil
	}
	out := filepath.Join(tmp, fmt.Sprintf("t%d.covdata.out", i))
	defer os.Remove(out)
	cmd := exec.CommandContext(ctx, "go", "tool", "covdata", "textfmt", "-i="+dir, "-o="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go tool covdata: %v\n%s", err, b)
	}
	return add(i, out)
}

// startsFile is added to the package for gathering coverage (%%s: its
// name): each process that runs the package's code notes its pid.
const startsFile = `package %s

import (
	mutatestartsos "os"
	mutatestartsstrconv "strconv"
)

func init() {
	if d := mutatestartsos.Getenv("MUTATE_STARTS"); d != "" {
		mutatestartsos.WriteFile(d+"/"+mutatestartsstrconv.Itoa(mutatestartsos.Getpid()), nil, 0o644)
	}
}
`

// unwritten reports whether a process other than the test binary (pid)
// ran the package's code, as noted in starts, and wrote no counters to
// gocover (coverage is written at a normal exit only).
// It also reports whether any other process ran at all (ran).
func unwritten(starts, gocover string, pid int) (opaque, ran bool, err error) {
	started, err := os.ReadDir(starts)
	if err != nil {
		return false, false, err
	}
	written := map[string]bool{}
	if entries, err := os.ReadDir(gocover); err == nil {
		for _, e := range entries {
			// covcounters.<meta hash>.<pid>.<time>
			if f := strings.Split(e.Name(), "."); len(f) == 4 && f[0] == "covcounters" && f[2] != strconv.Itoa(pid) {
				written[f[2]], ran = true, true
			}
		}
	}
	for _, e := range started {
		if e.Name() != strconv.Itoa(pid) {
			ran = true
			if !written[e.Name()] {
				opaque = true
			}
		}
	}
	return opaque, ran, nil
}

// parseProfileLine parses "path/file.go:SL.SC,EL.EC N COUNT".
func parseProfileLine(l string) (file string, r [4]int, count int, ok bool) {
	colon := strings.LastIndexByte(l, ':')
	if colon < 0 {
		return "", r, 0, false
	}
	file = l[:colon]
	f := strings.Fields(l[colon+1:])
	if len(f) != 3 {
		return "", r, 0, false
	}
	se := strings.Split(f[0], ",")
	if len(se) != 2 {
		return "", r, 0, false
	}
	for j, s := range se {
		lc := strings.Split(s, ".")
		if len(lc) != 2 {
			return "", r, 0, false
		}
		var e1, e2 error
		r[2*j], e1 = strconv.Atoi(lc[0])
		r[2*j+1], e2 = strconv.Atoi(lc[1])
		if e1 != nil || e2 != nil {
			return "", r, 0, false
		}
	}
	count, err := strconv.Atoi(f[2])
	return file, r, count, err == nil
}

// coveringTests returns the tests that may reach m's token, or all the
// passing tests when the token is evaluated before any test runs.
//
// Inside a function, the token is reached only if the smallest cover block
// of that function that contains it was entered: the tests that entered
// it. Cover blocks leave gaps: a case clause's expressions (between the
// switch's '{' and the clause's ':'), and what follows a function literal
// in a statement. A token in a gap is reached only if the innermost
// enclosing node whose start lies in a block was: the switch statement
// for a case expression, the statement for the rest. These are supersets,
// never subsets, of the tests that evaluate the token, so nothing that
// could kill a mutant is left out.
//
// Outside any function body (a constant, a package-level variable's
// initializer, an array length in a type), the token is evaluated at
// compile or init time and may affect any test: every passing test.
func coveringTests(m *mutant, blocks []block, posOf func(token.Pos) (int, int), passing []int) []int {
	var body *ast.BlockStmt
	for _, n := range m.path {
		switch n := n.(type) {
		case *ast.FuncLit:
			body = n.Body
		case *ast.FuncDecl:
			body = n.Body
		}
		if body != nil {
			break
		}
	}
	if body == nil {
		return passing
	}
	sl, sc := posOf(body.Lbrace)
	el, ec := posOf(body.Rbrace + 1) // a body's last block ends after its '}'
	var in []block
	for _, b := range blocks {
		if b.within(sl, sc, el, ec) {
			in = append(in, b)
		}
	}
	smallest := func(line, col int) *block {
		var best *block
		for i := range in {
			b := &in[i]
			if b.contains(line, col) && (best == nil || b.within(best.SL, best.SC, best.EL, best.EC)) {
				best = b
			}
		}
		return best
	}
	// A block that holds the token says, whether or not a test entered it.
	if b := smallest(m.Line, m.Col); b != nil {
		return b.Tests
	}
	for _, n := range m.path {
		if n == ast.Node(body) {
			break
		}
		if b := smallest(posOf(n.Pos())); b != nil {
			return b.Tests
		}
	}
	// Not found (a function no block of which ran, or a gap not foreseen):
	// every test that entered the function.
	var all []int
	for _, b := range in {
		all = append(all, b.Tests...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

func loadJSON(path string, v any) bool {
	b, err := os.ReadFile(path)
	return err == nil && json.Unmarshal(b, v) == nil
}

func storeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + fmt.Sprintf(".tmp%d", os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
