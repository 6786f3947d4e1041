// Command mutate is the mutation testing of .ci/mutation: it injects small
// bugs one at a time (gremlins v0.6.0's token substitutions: a comparison's
// boundary or sense flipped, + for -, ++ for --, ...) and lists those no
// test noticed. Standard library only.
//
// How it works, per package:
//
//  1. Mutants: every applicable token of the package's non-test .go files
//     that build on this platform (go list's GoFiles: build constraints
//     hold), with each enabled type (-ops; by default the five gremlins
//     enables by default, which every earlier figure used). As in
//     gremlins, a '-' is two mutants, INVERT_NEGATIVES and ARITHMETIC_BASE,
//     with the same text: they are judged once and counted twice.
//  2. Coverage, gathered once and cached: the test binary is built with
//     -cover once, and each top-level test (and example, and fuzz target's
//     seed corpus) runs alone, -workers at a time, with its own profile;
//     its duration is recorded. A test that fails unmutated is reported and
//     left out. A binary that a test builds from the package (go build
//     under the test, as connpipe's end-to-end tests do) is built with
//     coverage too (GOFLAGS), and its counters are added; a test that ran
//     one that died without writing them (a signal) reaches, as far as is
//     known, everything. A mutant whose token no test reaches is NOT
//     COVERED, a survivor, without a run. See coveringTests for what
//     "reaches" means (a case clause's expression is not in any cover
//     block; a constant is reached by every test).
//  3. Judging: the mutated file goes into an overlay over a snapshot of the
//     package's files (go test -c -overlay: no copy of the module, the
//     build cache shared; most mutants are built faster by relinking, see
//     relinker), and the binary runs, in the package's directory, the tests
//     that reach the token, fastest first (in a few runs of growing length,
//     see waves), with -test.failfast and the full suite (CONN_SHORT
//     unset). A run is bounded by max(-min-timeout, -timeout-factor × what
//     its tests took), and by -stall without output. A failing test kills
//     the mutant (the first one is recorded), a hang too (TIMED OUT), a
//     compile error makes it NOT VIABLE, and passing lets it live.
//  4. Verdicts are cached (-cache), keyed by the mutant, the mutated file,
//     the tests that judge it and a fingerprint of everything they could
//     see: every file of the package's directory and its testdata, test
//     files included, the Go files of the module's packages it imports,
//     go.mod, go.sum, the Go version and platform. Any change there
//     re-judges every mutant of the package: coarse but sound, where keying
//     by what each test reads would need the tests' own dependencies. The
//     coverage map is cached under the same fingerprint. (The timeouts are
//     not in the key: -rejudge after changing them.)
//
// Efficacy = killed (timeouts included) / (killed + lived + not covered).
//
//	go run ./.ci/mutate [-pkgs .,./relp] [-files write.go,batch.go] [-diff HEAD~3] [-o out.json]
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// version is part of every cache key: change it when verdicts or coverage
// maps would come out differently.
const version = "mutate/2"

// defaultFiles are the files of cmd/connpipe that are mutated by default: the
// send path (see .ci/mutation for what is left out, and why).
// (by import path, relative to the module's).
var defaultFiles = map[string][]string{
	"cmd/connpipe": {"send.go", "send_setup.go", "send_read.go", "send_flush.go", "send_summary.go", "send_events.go", "send_spool.go", "address.go", "tlsconf.go"},
}

type runner struct {
	moduleDir     string
	modulePath    string
	tmp           string
	cacheDir      string
	workers       int
	minTimeout    time.Duration
	stall         time.Duration
	procs         int
	timeoutFactor float64
	coverTimeout  time.Duration
	verbose       bool
	rejudge       bool
	recover       bool
	goVersion     string
	cleanup       []string // directories to remove at the end
	noRelink      bool
	noSchema      bool
}

type pkgInfo struct {
	pattern       string
	short         string // for file names
	Name          string
	ImportPath    string
	Dir           string
	files         map[string][]byte // every .go file of the package, by absolute path
	snapshot      map[string]string // the overlay that pins them to what was read
	overlay       string            // its JSON file
	mutable       []string          // absolute paths of the files to mutate
	goFiles       []string          // absolute paths of the package's non-test files
	schemaBin     string            // the schema binary (see schema.go), if built
	schemaOverlay string            // the overlay that builds it
	fingerprint   string
	cov           *coverageMap
	mutants       []*mutant
	passing       []int
	failing       []testInfo
	opaque        []int
	testIndex     map[string]int // by name
	rl            *relinker
	childBuild    time.Duration // a go build of the package, if its tests build it
	markerDir     string        // a package of the module it imports, and its name
	markerName    string
	judged        time.Duration // worker time spent judging
	built         time.Duration // of which building
	relinked      int           // mutants built by the relinker
	rebuilt       int           // and by go test -c
	inSchema      int           // judged with the schema binary, not built
}

func main() {
	var (
		pkgs     = flag.String("pkgs", ".,./relp,./cmd/connpipe", "comma-separated packages (directories relative to the module's root)")
		files    = flag.String("files", "", "comma-separated file names: mutate only these (in every package given; for cmd/connpipe this replaces the default send-path files)")
		diff     = flag.String("diff", "", "judge only mutants on lines added or changed since this git revision (working tree included)")
		out      = flag.String("o", "", "write every mutant and its verdict as JSON to this file")
		workers  = flag.Int("workers", 2, "tests (coverage) or mutants (judging) run at once")
		minTO    = flag.Duration("min-timeout", 15*time.Second, "the least time one run of a mutant's tests is given")
		factor   = flag.Float64("timeout-factor", 4, "a run of tests is given this many times what they took unmutated")
		procs    = flag.Int("procs", 3, "a mutant's tests that take a while run in up to this many processes at once (the suite mostly waits: it uses under half a core; 3 judged the root package in 19m26s, 2 in 21m39s, verdict for verdict the same)")
		stall    = flag.Duration("stall", 3*time.Second, "a run of a mutant's tests that prints nothing for max(this, -timeout-factor × its slowest test's duration) has hung: timed out (0: no such bound)")
		coverTO  = flag.Duration("cover-timeout", 10*time.Minute, "the bound of one test's coverage run")
		cacheDir = flag.String("cache", "", "the cache's directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/conn-mutation)")
		noCache  = flag.Bool("rejudge", false, "judge again the mutants the cache has verdicts for (and update it)")
		recover  = flag.Bool("recover", false, "gather coverage again even if the cache has it")
		opsFlag  = flag.String("ops", strings.Join(defaultOperators, ","), "comma-separated mutation types, or \"all\" (adds INVERT_LOGICAL, INVERT_LOOPCTRL, INVERT_ASSIGNMENTS)")
		verbose  = flag.Bool("v", false, "print each test's coverage run")
		listOnly = flag.Bool("list", false, "list the mutants and whether tests cover them, judge nothing")
		noRelink = flag.Bool("no-relink", false, "build every mutant with go test -c -overlay (no relinking: about 3 times slower)")
		keep     = flag.Bool("keep", false, "keep the work directory (snapshots, schema sources, binaries) and print its path")
		noSchema = flag.Bool("no-schema", false, "build every mutant on its own, none in a package's schema binary (see schema.go)")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "mutate: unexpected arguments:", flag.Args())
		os.Exit(2)
	}
	ops := map[string]bool{}
	for _, o := range strings.Split(*opsFlag, ",") {
		o = strings.TrimSpace(o)
		if o == "all" {
			for k := range mutations {
				ops[k] = true
			}
			continue
		}
		if _, ok := mutations[o]; !ok {
			fmt.Fprintf(os.Stderr, "mutate: unknown mutation type %q\n", o)
			os.Exit(2)
		}
		ops[o] = true
	}
	r := &runner{
		workers: max(*workers, 1), minTimeout: *minTO, stall: *stall, procs: max(*procs, 1), timeoutFactor: *factor,
		coverTimeout: *coverTO, verbose: *verbose, rejudge: *noCache, recover: *recover,
		cacheDir: *cacheDir, noRelink: *noRelink, noSchema: *noSchema,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := r.run(ctx, split(*pkgs), split(*files), *diff, *out, ops, *listOnly)
	if *keep {
		fmt.Println("work directory kept:", r.tmp)
	}
	for _, d := range append(r.cleanup, r.tmp) {
		if d != "" && !*keep {
			os.RemoveAll(d)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(2)
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (r *runner) run(ctx context.Context, patterns, onlyFiles []string, diffBase, out string, ops map[string]bool, listOnly bool) error {
	start := time.Now()
	if err := r.setup(); err != nil {
		return err
	}
	fmt.Printf("load: %s\n", loadavg())
	var pkgs []*pkgInfo
	for _, pat := range patterns {
		p, err := r.load(pat, onlyFiles)
		if err != nil {
			return err
		}
		if err := r.findMutants(p, ops, diffBase); err != nil {
			return err
		}
		if len(p.mutants) == 0 {
			fmt.Printf("%s: no mutants\n", p.ImportPath)
			continue
		}
		pkgs = append(pkgs, p)
	}

	// Coverage, package by package.
	var coverTime time.Duration
	for _, p := range pkgs {
		t := time.Now()
		if err := r.coverage(ctx, p); err != nil {
			return err
		}
		coverTime += time.Since(t)
	}
	if listOnly {
		for _, p := range pkgs {
			for _, m := range p.mutants {
				var sum time.Duration
				for _, i := range m.covered {
					sum += p.cov.Tests[i].Duration
				}
				fmt.Printf("%s %s %s→%s tests=%d (%.1fs)  %s\n", m.pos(), m.Operator, m.From, m.To, len(m.covered), sum.Seconds(), m.Source)
			}
		}
		return nil
	}

	// Judging, every package's mutants in one pool.
	judgeStart := time.Now()
	if err := r.judgeAll(ctx, pkgs); err != nil {
		return err
	}
	judgeTime := time.Since(judgeStart)

	r.summary(pkgs, coverTime, judgeTime, time.Since(start))
	fmt.Printf("load: %s\n", loadavg())
	if out != "" {
		return r.writeJSON(out, pkgs, coverTime, judgeTime, time.Since(start))
	}
	return nil
}

func (r *runner) setup() error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}} {{.Path}}").Output()
	if err != nil {
		return fmt.Errorf("go list -m: %v (run it inside the module)", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return fmt.Errorf("go list -m: %q", out)
	}
	r.moduleDir, r.modulePath = f[0], f[1]
	v, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return err
	}
	r.goVersion = strings.TrimSpace(string(v))
	if r.cacheDir == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return err
			}
			base = filepath.Join(home, ".cache")
		}
		r.cacheDir = filepath.Join(base, "conn-mutation")
	}
	r.tmp, err = os.MkdirTemp("", "mutate")
	return err
}

// testEnv is the environment of the tests: the full suite (CONN_SHORT
// unset), with extra added.
func (r *runner) testEnv(extra []string) []string {
	var env []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		if k == "CONN_SHORT" || k == "GOCOVERDIR" || slices.ContainsFunc(extra, func(x string) bool { return strings.HasPrefix(x, k+"=") }) {
			continue
		}
		env = append(env, e)
	}
	return append(env, extra...)
}

type listedPkg struct {
	ImportPath, Dir, Name                        string
	GoFiles, CgoFiles, TestGoFiles, XTestGoFiles []string
	EmbedFiles, TestEmbedFiles, XTestEmbedFiles  []string
	IgnoredGoFiles, Imports                      []string
	Module                                       *struct{ Path string }
	Error                                        *struct{ Err string }
}

func goList(dir string, args ...string) ([]listedPkg, error) {
	cmd := exec.Command("go", append([]string{"list", "-e", "-json"}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %v: %v\n%s", args, err, stderr.String())
	}
	var pkgs []listedPkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listedPkg
		if err := dec.Decode(&p); err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// load reads the package pat: its files, its snapshot overlay, and its
// fingerprint.
func (r *runner) load(pat string, onlyFiles []string) (*pkgInfo, error) {
	if !strings.HasPrefix(pat, ".") && !filepath.IsAbs(pat) {
		pat = "./" + pat // a directory, not an import path ("cmd/..." is Go's own)
	}
	listed, err := goList(r.moduleDir, pat)
	if err != nil {
		return nil, err
	}
	if len(listed) != 1 {
		return nil, fmt.Errorf("%s: %d packages", pat, len(listed))
	}
	lp := listed[0]
	if lp.Error != nil {
		return nil, fmt.Errorf("%s: %s", pat, lp.Error.Err)
	}
	p := &pkgInfo{
		pattern: pat, ImportPath: lp.ImportPath, Dir: lp.Dir, Name: lp.Name,
		files: map[string][]byte{}, snapshot: map[string]string{},
	}
	p.short = strings.NewReplacer("/", "_", ".", "_").Replace(strings.TrimPrefix(lp.ImportPath, r.modulePath))
	if p.short == "" {
		p.short = "root"
	}
	snapDir := filepath.Join(r.tmp, "snapshot-"+p.short)
	if err := os.MkdirAll(snapDir, 0o755); err != nil {
		return nil, err
	}
	var all []string
	all = append(all, lp.GoFiles...)
	all = append(all, lp.CgoFiles...)
	all = append(all, lp.TestGoFiles...)
	all = append(all, lp.XTestGoFiles...)
	for _, f := range all {
		abs := filepath.Join(lp.Dir, f)
		b, err := os.ReadFile(abs)
		if err != nil {
			return nil, err
		}
		p.files[abs] = b
		snap := filepath.Join(snapDir, f)
		if err := os.WriteFile(snap, b, 0o644); err != nil {
			return nil, err
		}
		p.snapshot[abs] = snap
	}
	ov, _ := json.Marshal(map[string]any{"Replace": p.snapshot})
	p.overlay = filepath.Join(snapDir, "overlay.json")
	if err := os.WriteFile(p.overlay, ov, 0o644); err != nil {
		return nil, err
	}

	want := onlyFiles
	if len(want) == 0 {
		want = defaultFiles[strings.TrimPrefix(strings.TrimPrefix(lp.ImportPath, r.modulePath), "/")]
	}
	for _, f := range append(append([]string{}, lp.GoFiles...), lp.CgoFiles...) {
		p.goFiles = append(p.goFiles, filepath.Join(lp.Dir, f))
		if len(want) == 0 || slices.Contains(want, f) {
			p.mutable = append(p.mutable, filepath.Join(lp.Dir, f))
		}
	}
	for _, f := range want {
		if !slices.Contains(lp.GoFiles, f) && len(onlyFiles) == 0 {
			return nil, fmt.Errorf("%s: the default file %s is not among its files", pat, f)
		}
	}

	fp, err := r.fingerprint(p, lp)
	if err != nil {
		return nil, err
	}
	p.fingerprint = fp
	return p, nil
}

// fingerprint hashes everything a test of the package could see: every
// regular file of its directory and of its testdata, the Go files of the
// module's packages it (or its tests) import, go.mod and go.sum, the
// runner's version, the Go version and the platform. The package's own
// .go files are hashed as read (the snapshot), not read again.
func (r *runner) fingerprint(p *pkgInfo, lp listedPkg) (string, error) {
	type entry struct{ name, sum string }
	var entries []entry
	add := func(abs string, b []byte) {
		rel, _ := filepath.Rel(r.moduleDir, abs)
		s := sha256.Sum256(b)
		entries = append(entries, entry{rel, hex.EncodeToString(s[:])})
	}
	for abs, b := range p.files {
		add(abs, b)
	}
	readAdd := func(abs string) error {
		if _, ok := p.files[abs]; ok {
			return nil
		}
		b, err := os.ReadFile(abs)
		if err != nil {
			return err
		}
		add(abs, b)
		return nil
	}
	dirEntries, err := os.ReadDir(p.Dir)
	if err != nil {
		return "", err
	}
	for _, e := range dirEntries {
		if e.Type().IsRegular() {
			if err := readAdd(filepath.Join(p.Dir, e.Name())); err != nil {
				return "", err
			}
		}
	}
	td := filepath.Join(p.Dir, "testdata")
	if _, err := os.Stat(td); err == nil {
		err := filepath.WalkDir(td, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			return readAdd(path)
		})
		if err != nil {
			return "", err
		}
	}
	deps, err := goList(r.moduleDir, "-deps", "-test", p.pattern)
	if err != nil {
		return "", err
	}
	seen := map[string]bool{}
	for _, d := range deps {
		if d.Module == nil || d.Module.Path != r.modulePath || d.Dir == p.Dir || seen[d.Dir] {
			continue
		}
		seen[d.Dir] = true
		if p.markerDir == "" && slices.Contains(lp.Imports, d.ImportPath) {
			p.markerDir, p.markerName = d.Dir, d.Name
		}
		for _, list := range [][]string{d.GoFiles, d.CgoFiles, d.EmbedFiles} {
			for _, f := range list {
				if err := readAdd(filepath.Join(d.Dir, f)); err != nil {
					return "", err
				}
			}
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if err := readAdd(filepath.Join(r.moduleDir, f)); err != nil && !os.IsNotExist(err) {
			return "", err
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s/%s\n%s\n", version, r.goVersion, runtime.GOOS, runtime.GOARCH, p.ImportPath)
	for _, e := range entries {
		fmt.Fprintf(h, "%s %s\n", e.sum, e.name)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// findMutants lists the package's mutants, on changed lines only with a
// diff base.
func (r *runner) findMutants(p *pkgInfo, ops map[string]bool, diffBase string) error {
	var changed map[string]map[int]bool
	if diffBase != "" {
		var err error
		if changed, err = changedLines(r.moduleDir, diffBase, p.mutable); err != nil {
			return err
		}
	}
	for _, abs := range p.mutable {
		rel, _ := filepath.Rel(r.moduleDir, abs)
		ms, fset, err := findMutants(p.ImportPath, rel, abs, p.files[abs], ops)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if changed != nil {
				if lines := changed[abs]; lines != nil && !lines[m.Line] {
					continue
				}
			}
			m.fset = fset
			p.mutants = append(p.mutants, m)
		}
	}
	return nil
}

// coverage gathers (or loads from the cache) the package's coverage map,
// and finds the tests that reach each mutant.
func (r *runner) coverage(ctx context.Context, p *pkgInfo) error {
	path := filepath.Join(r.cacheDir, "coverage", p.fingerprint+".json")
	cm := &coverageMap{}
	if !r.recover && loadJSON(path, cm) {
		fmt.Printf("%s: coverage of %d tests from the cache (gathered in %s)\n", p.ImportPath, len(cm.Tests), cm.Took.Round(time.Second))
	} else {
		var err error
		if cm, err = gatherCoverage(ctx, r, p); err != nil {
			return err
		}
		if err := storeJSON(path, cm); err != nil {
			return err
		}
		var sum time.Duration
		for _, t := range cm.Tests {
			sum += t.Duration
		}
		fmt.Printf("%s: coverage gathered in %s (the tests took %s one by one)\n", p.ImportPath, cm.Took.Round(time.Second), sum.Round(time.Second))
	}
	p.cov = cm
	p.testIndex = map[string]int{}
	for i, t := range cm.Tests {
		p.testIndex[t.Name] = i
	}
	for i, t := range cm.Tests {
		switch {
		case t.Failed:
			p.failing = append(p.failing, t)
		case t.Opaque:
			p.opaque = append(p.opaque, i)
			fallthrough
		default:
			p.passing = append(p.passing, i)
		}
	}
	if len(p.opaque) > 0 {
		fmt.Printf("%s: %d test(s) ran a binary of the package that wrote no coverage (it ended by a signal, or was killed): each counts as reaching every mutant:", p.ImportPath, len(p.opaque))
		for _, i := range p.opaque {
			fmt.Printf(" %s", cm.Tests[i].Name)
		}
		fmt.Println()
	}
	if len(p.failing) > 0 {
		fmt.Printf("\n!!! %s: %d test(s) FAIL UNMUTATED and judge nothing (their coverage is not counted):\n", p.ImportPath, len(p.failing))
		for _, t := range p.failing {
			fmt.Printf("!!!   %s (%.1fs)\n", t.Name, t.Duration.Seconds())
			for _, l := range strings.Split(t.Output, "\n") {
				fmt.Printf("!!!     | %s\n", l)
			}
		}
		fmt.Printf("!!! (-recover gathers coverage again)\n\n")
	}
	byDuration := func(a, b int) int {
		if c := cm.Tests[a].Duration - cm.Tests[b].Duration; c != 0 {
			if c < 0 {
				return -1
			}
			return 1
		}
		return a - b
	}
	for _, m := range p.mutants {
		posOf := func(pos token.Pos) (int, int) {
			pp := m.fset.Position(pos)
			return pp.Line, pp.Column
		}
		tests := coveringTests(m, cm.Blocks[filepath.Base(m.absFile)], posOf, p.passing)
		m.covered = slices.Clone(tests)
		for _, i := range p.opaque {
			if !slices.Contains(m.covered, i) {
				m.covered = append(m.covered, i)
			}
		}
		slices.SortFunc(m.covered, byDuration)
		m.Tests = len(m.covered)
		if len(m.covered) == 0 {
			m.Status = notCovered
		}
	}
	return nil
}

type job struct {
	p       *pkgInfo
	m       *mutant   // judged
	same    []*mutant // identical mutants (a '-' under two types) that share its verdict
	key     string
	expense time.Duration
}

type cachedVerdict struct {
	Status, Killer, Detail string
	Seconds                float64
	Flaky                  []string
}

// judgeAll judges every covered mutant of pkgs, the most expensive first
// (so that the last ones to finish are short), -workers at a time.
func (r *runner) judgeAll(ctx context.Context, pkgs []*pkgInfo) error {
	var jobs []*job
	byMutation := map[string]*job{}
	total, cached := 0, 0
	for _, p := range pkgs {
		for _, m := range p.mutants {
			total++
			if m.Status == notCovered {
				continue
			}
			id := fmt.Sprintf("%s:%d:%s", m.absFile, m.offset, m.To)
			if j := byMutation[id]; j != nil {
				j.same = append(j.same, m)
				m.SameAs = j.m.Operator
				continue
			}
			j := &job{p: p, m: m, key: r.verdictKey(p, m)}
			for _, i := range m.covered {
				j.expense += p.cov.Tests[i].Duration
			}
			byMutation[id] = j
			var v cachedVerdict
			if !r.rejudge && loadJSON(r.verdictPath(j.key), &v) {
				m.Status, m.Killer, m.Detail, m.Flaky, m.Cached = v.Status, v.Killer, v.Detail, v.Flaky, true
				cached++
				continue
			}
			jobs = append(jobs, j)
		}
	}
	sort.SliceStable(jobs, func(a, b int) bool { return jobs[a].expense > jobs[b].expense })
	for _, p := range pkgs {
		if slices.ContainsFunc(p.cov.Tests, func(t testInfo) bool { return t.RanBinary }) && slices.ContainsFunc(jobs, func(j *job) bool { return j.p == p }) {
			p.childBuild = r.timeChildBuild(ctx, p)
			fmt.Printf("%s: its tests build the package (go build, %s here): their runs may be silent that much longer\n",
				p.ImportPath, p.childBuild.Round(100*time.Millisecond))
		}
	}
	if !r.noSchema {
		for _, p := range pkgs {
			if !slices.ContainsFunc(jobs, func(j *job) bool { return j.p == p }) {
				continue
			}
			r.useSchema(ctx, p, jobs)
		}
	}
	if !r.noRelink {
		for _, p := range pkgs {
			if !slices.ContainsFunc(jobs, func(j *job) bool { return j.p == p }) {
				continue
			}
			rl, err := newRelinker(ctx, r, p, ldflags)
			if err != nil {
				fmt.Printf("%s: no relinking, every mutant is built in full: %v\n", p.ImportPath, err)
				continue
			}
			p.rl = rl
		}
	}
	fmt.Printf("\n%d mutants: %d to judge, %d judged before (cache), %d identical to another, the rest not covered\n",
		total, len(jobs), cached, total-len(jobs)-cached-countNotCovered(pkgs))

	var (
		mu    sync.Mutex
		done  int
		wg    sync.WaitGroup
		next  = make(chan *job)
		start = time.Now()
		fail  error
	)
	for w := 0; w < r.workers; w++ {
		work := filepath.Join(r.tmp, fmt.Sprintf("worker%d", w))
		if err := os.MkdirAll(work, 0o755); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				r.judge(ctx, j.p, j.m, work)
				if ctx.Err() != nil {
					continue
				}
				m := j.m
				mu.Lock()
				if m.Status == "ERROR" {
					fail = fmt.Errorf("%s %s: %s", m.pos(), m.Operator, m.Detail)
				} else if m.Status == buildError {
					fmt.Printf("!!! %s %s: the build failed, not in the mutated file (no verdict, not cached):\n!!!   %s\n",
						m.pos(), m.Operator, strings.ReplaceAll(m.Detail, "\n", "\n!!!   "))
				} else if err := storeJSON(r.verdictPath(j.key), cachedVerdict{m.Status, m.Killer, m.Detail, m.Seconds, m.Flaky}); err != nil {
					fail = err
				}
				j.p.judged += time.Duration(m.Seconds * float64(time.Second))
				j.p.built += time.Duration(m.Build * float64(time.Second))
				if m.InSchema {
					j.p.inSchema++
				} else if m.Relinked {
					j.p.relinked++
				} else if m.Status != notViable {
					j.p.rebuilt++
				}
				done++
				note := ""
				if len(m.Flaky) > 0 {
					note = " [not confirmed alone: " + strings.Join(m.Flaky, ", ") + "]"
				}
				fmt.Printf("[%d/%d %s] %-11s %s %s %s→%s (%d tests, %.1fs) %s%s\n", done, len(jobs),
					time.Since(start).Round(time.Second), m.Status, m.pos(), m.Operator, m.From, m.To, m.Tests, m.Seconds, m.Killer, note)
				mu.Unlock()
			}
		}()
	}
feed:
	for _, j := range jobs {
		mu.Lock()
		f := fail
		mu.Unlock()
		if f != nil {
			break
		}
		select {
		case next <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if fail != nil {
		return fail
	}
	for _, j := range byMutation {
		for _, s := range j.same {
			s.Status, s.Killer, s.Detail, s.Flaky, s.Cached = j.m.Status, j.m.Killer, j.m.Detail, j.m.Flaky, j.m.Cached
		}
	}
	return nil
}

// timeChildBuild measures what a test that builds the package (connpipe's
// end-to-end tests run go build) spends building it under a mutant: the
// package compiled again and linked, its dependencies cached. At least a
// second; 30 seconds if the build fails.
func (r *runner) timeChildBuild(ctx context.Context, p *pkgInfo) time.Duration {
	nonce := fmt.Sprintf("%d", time.Now().UnixNano())
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-gcflags="+p.ImportPath+"=-D=/mutate-child-"+nonce,
		"-ldflags=-X=main.mutateChildNonce="+nonce, "-overlay="+p.overlay, "-o", filepath.Join(r.tmp, "child-"+p.short), p.Dir)
	cmd.Dir = r.moduleDir
	if err := cmd.Run(); err != nil {
		return 30 * time.Second
	}
	return max(time.Second, time.Since(start))
}

func countNotCovered(pkgs []*pkgInfo) int {
	n := 0
	for _, p := range pkgs {
		for _, m := range p.mutants {
			if m.Status == notCovered {
				n++
			}
		}
	}
	return n
}

// verdictKey identifies a judgement: the mutant, the mutated file, the
// package's fingerprint, and the tests that judge it.
func (r *runner) verdictKey(p *pkgInfo, m *mutant) string {
	mutated, _ := apply(p.files[m.absFile], m)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s:%d:%d %s %s %s\n", p.fingerprint, p.ImportPath, m.File, m.Line, m.Col, m.Operator, m.From, m.To)
	h.Write(mutated)
	for _, i := range m.covered {
		fmt.Fprintf(h, "\n%s", p.cov.Tests[i].Name)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (r *runner) verdictPath(key string) string {
	return filepath.Join(r.cacheDir, "verdicts", key[:2], key+".json")
}

type tally struct {
	mutants, killed, timedOut, lived, notCovered, notViable, errors int
}

func (t *tally) add(m *mutant) {
	t.mutants++
	switch m.Status {
	case killed:
		t.killed++
	case timedOut:
		t.timedOut++
	case lived:
		t.lived++
	case notCovered:
		t.notCovered++
	case notViable:
		t.notViable++
	default:
		t.errors++
	}
}

func (t tally) efficacy() string {
	k := t.killed + t.timedOut
	if d := k + t.lived + t.notCovered; d > 0 {
		return fmt.Sprintf("%.1f%%", 100*float64(k)/float64(d))
	}
	return "-"
}

func (t tally) row(name string) string {
	return fmt.Sprintf("  %-28s %7d %7d %8d %6d %8d %8d %9s", name, t.mutants, t.killed+t.timedOut, t.timedOut, t.lived, t.notCovered, t.notViable, t.efficacy())
}

func (r *runner) summary(pkgs []*pkgInfo, coverTime, judgeTime, total time.Duration) {
	var all tally
	fmt.Println()
	for _, p := range pkgs {
		fmt.Printf("%s (%d passing tests", p.ImportPath, len(p.passing))
		if len(p.failing) > 0 {
			fmt.Printf(", %d FAILING UNMUTATED, left out", len(p.failing))
		}
		fmt.Printf("; judging took %s of worker time, %s of it building: %d in the schema binary, %d relinked, %d built in full)\n",
			p.judged.Round(time.Second), p.built.Round(time.Second), p.inSchema, p.relinked, p.rebuilt)
		fmt.Printf("  %-28s %7s %7s %8s %6s %8s %8s %9s\n", "file", "mutants", "killed", "timeout", "lived", "uncov", "unviable", "efficacy")
		byFile := map[string]*tally{}
		var names []string
		var pt tally
		for _, m := range p.mutants {
			if byFile[m.File] == nil {
				byFile[m.File] = &tally{}
				names = append(names, m.File)
			}
			byFile[m.File].add(m)
			pt.add(m)
			all.add(m)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Println(byFile[n].row(n))
		}
		fmt.Println(pt.row("total"))
		fmt.Println()
	}
	if len(pkgs) > 1 {
		fmt.Println(all.row("all packages"))
		fmt.Println()
	}
	var survivors []*mutant
	for _, p := range pkgs {
		for _, m := range p.mutants {
			if m.Status == lived || m.Status == notCovered {
				survivors = append(survivors, m)
			}
		}
	}
	sort.SliceStable(survivors, func(i, j int) bool {
		a, b := survivors[i], survivors[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	if len(survivors) > 0 {
		fmt.Printf("survivors (%d):\n", len(survivors))
		for _, m := range survivors {
			tag := ""
			if m.Status == notCovered {
				tag = " [not covered]"
			}
			if m.SameAs != "" {
				tag += " [= " + m.SameAs + "]"
			}
			fmt.Printf("  %s %s %s→%s%s\n      %s\n", m.pos(), m.Operator, m.From, m.To, tag, m.Source)
		}
		fmt.Println()
	}
	for _, p := range pkgs {
		for _, m := range p.mutants {
			if m.Status == notViable && !m.Cached {
				fmt.Printf("not viable: %s %s %s→%s: %s\n", m.pos(), m.Operator, m.From, m.To, strings.ReplaceAll(m.Detail, "\n", " | "))
			}
		}
	}
	var flaky []string
	for _, p := range pkgs {
		for _, m := range p.mutants {
			if len(m.Flaky) > 0 && m.SameAs == "" {
				flaky = append(flaky, fmt.Sprintf("  %s %s %s→%s: %s failed beside other tests, passed alone twice; now %s",
					m.pos(), m.Operator, m.From, m.To, strings.Join(m.Flaky, ", "), m.Status))
			}
		}
	}
	if len(flaky) > 0 {
		fmt.Printf("kills not confirmed (%d; the wave was run again in one process):\n%s\n\n", len(flaky), strings.Join(flaky, "\n"))
	}
	fmt.Printf("efficacy %s: killed %d (%d by timing out), lived %d, not covered %d, not viable %d, of %d mutants\n",
		all.efficacy(), all.killed+all.timedOut, all.timedOut, all.lived, all.notCovered, all.notViable, all.mutants)
	if all.errors > 0 {
		fmt.Printf("!!! %d mutants have no verdict (BUILD ERROR: a build failed outside the mutated file); run again\n", all.errors)
	}
	fmt.Printf("time: %s in all: coverage %s, judging %s (%d workers)\n",
		total.Round(time.Second), coverTime.Round(time.Second), judgeTime.Round(time.Second), r.workers)
}

func (r *runner) writeJSON(path string, pkgs []*pkgInfo, coverTime, judgeTime, total time.Duration) error {
	type pkgOut struct {
		Package  string     `json:"package"`
		Passing  int        `json:"passing_tests"`
		Failing  []testInfo `json:"failing_tests,omitempty"`
		Mutants  []*mutant  `json:"mutants"`
		Efficacy string     `json:"efficacy"`
	}
	var o struct {
		Module          string   `json:"module"`
		GoVersion       string   `json:"go_version"`
		Workers         int      `json:"workers"`
		CoverageSeconds float64  `json:"coverage_seconds"`
		JudgingSeconds  float64  `json:"judging_seconds"`
		TotalSeconds    float64  `json:"total_seconds"`
		Efficacy        string   `json:"efficacy"`
		Packages        []pkgOut `json:"packages"`
	}
	o.Module, o.GoVersion, o.Workers = r.modulePath, r.goVersion, r.workers
	o.CoverageSeconds, o.JudgingSeconds, o.TotalSeconds = coverTime.Seconds(), judgeTime.Seconds(), total.Seconds()
	var all tally
	for _, p := range pkgs {
		var t tally
		for _, m := range p.mutants {
			t.add(m)
			all.add(m)
		}
		o.Packages = append(o.Packages, pkgOut{p.ImportPath, len(p.passing), p.failing, p.mutants, t.efficacy()})
	}
	o.Efficacy = all.efficacy()
	b, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ") + fmt.Sprintf(" (%d CPUs)", runtime.NumCPU())
}
