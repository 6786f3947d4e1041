package main

// Mutant schemata (as Stryker and Mull build them): most of a package's
// mutants go into one test binary, each behind a switch read from the
// environment, so that a mutant costs its tests' run and no build. Every
// mutated expression becomes a call of a function literal that evaluates
// its operands once, as the original does, and applies the operator the
// active mutant says:
//
//	a < b   →  func(x, y T) bool { switch mutateActive { case 7: return x <= y; case 8: return x >= y }; return x < y }(a, b)
//	n++     →  func() { if mutateActive == 9 { n-- } else { n++ } }()
//
// Writing the operands' types needs the package type-checked (go/types,
// dependencies from the build cache's export data). What cannot be
// written that way is left to one build per mutant: constant expressions
// (a function call is not a constant), a '+' on strings (its '-' does not
// compile), a type the file cannot name. A file whose schema does not
// compile is left out whole; and before any mutant is judged, the schema
// binary must pass every test with no mutant active, or the package is
// judged the old way. A binary a test builds from the package (connpipe's
// end-to-end tests) is built from the schema too (GOFLAGS=-overlay, the
// same build every time, so cached), and inherits the switch.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// schemaEnv names the environment variable that selects the active mutant.
const schemaEnv = "MUTATE_ACTIVE"

// schemaFile is added to the package: the switch every schema reads.
const schemaFile = `package %s

import (
	"os"
	"strconv"
)

var mutateActive = func() int {
	n, _ := strconv.Atoi(os.Getenv(%q))
	return n
}()
`

// A site is one mutated node of a file and the mutants it carries.
type site struct {
	node       ast.Node
	start, end int // offsets in the file
	alts       []*mutant
}

// buildSchema builds p's schema binary for the mutants of jobs that can go
// in it, sets their schemaID, and returns the binary's path, or "" with the
// reason when none could be built.
func (r *runner) buildSchema(ctx context.Context, p *pkgInfo, jobs []*job) (bin, why string) {
	start := time.Now()
	fset := token.NewFileSet()
	var files []*ast.File
	for _, abs := range p.goFiles {
		f, err := parser.ParseFile(fset, abs, p.files[abs], parser.SkipObjectResolution)
		if err != nil {
			return "", err.Error()
		}
		files = append(files, f)
	}
	exports, err := exportData(ctx, r.moduleDir, p.Dir)
	if err != nil {
		return "", err.Error()
	}
	conf := types.Config{Importer: importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		if f, ok := exports[path]; ok {
			return os.Open(f)
		}
		return nil, fmt.Errorf("no export data for %s", path)
	})}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
	pkg, err := conf.Check(p.ImportPath, fset, files, info)
	if err != nil {
		return "", "type-checking: " + err.Error()
	}

	// The mutants by file and offset of their token.
	byFile := map[string]map[int][]*mutant{}
	for _, j := range jobs {
		if j.p != p {
			continue
		}
		if byFile[j.m.absFile] == nil {
			byFile[j.m.absFile] = map[int][]*mutant{}
		}
		byFile[j.m.absFile][j.m.offset] = append(byFile[j.m.absFile][j.m.offset], j.m)
	}
	sources := map[string][]byte{} // schema files by the absolute path they replace
	ids := map[string][]*mutant{}  // the mutants each carries
	next := 1
	for i, f := range files {
		abs := p.goFiles[i]
		at := byFile[abs]
		if len(at) == 0 {
			continue
		}
		src := p.files[abs]
		tf := fset.File(f.Pos())
		off := func(pos token.Pos) int { return tf.Offset(pos) }
		q := qualifier(f, pkg)
		var sites []*site
		ast.Inspect(f, func(n ast.Node) bool {
			var tok token.Pos
			switch n := n.(type) {
			case *ast.BinaryExpr:
				tok = n.OpPos
			case *ast.UnaryExpr:
				tok = n.OpPos
			case *ast.IncDecStmt:
				tok = n.TokPos
			default:
				return true
			}
			ms := at[off(tok)]
			if len(ms) == 0 || !schematic(n, info, q) {
				return true
			}
			sites = append(sites, &site{node: n, start: off(n.Pos()), end: off(n.End()), alts: ms})
			return true
		})
		if len(sites) == 0 {
			continue
		}
		sortSites(sites)
		for _, s := range sites {
			for _, m := range s.alts {
				m.schemaID = next
				next++
			}
		}
		var b bytes.Buffer
		b.Write(src[:sites[0].start])
		w := &schemaWriter{src: src, info: info, q: q, off: off}
		b.WriteString(w.rewrite(sites[0].start, len(src), sites))
		sources[abs] = b.Bytes()
		for _, s := range sites {
			ids[abs] = append(ids[abs], s.alts...)
		}
	}
	drop := func(abs string) {
		for _, m := range ids[abs] {
			m.schemaID = 0
		}
		delete(sources, abs)
		delete(ids, abs)
	}

	dir := filepath.Join(r.tmp, "schema-"+p.short)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err.Error()
	}
	bin = filepath.Join(dir, "schema.test")
	ovPath := filepath.Join(dir, "overlay.json")
	for len(sources) > 0 {
		ov := map[string]string{}
		for k, v := range p.snapshot {
			ov[k] = v
		}
		for abs, b := range sources {
			path := filepath.Join(dir, filepath.Base(abs))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				return "", err.Error()
			}
			ov[abs] = path
		}
		helper := filepath.Join(dir, "zz_mutate_schema.go")
		if err := os.WriteFile(helper, fmt.Appendf(nil, schemaFile, p.Name, schemaEnv), 0o644); err != nil {
			return "", err.Error()
		}
		ov[filepath.Join(p.Dir, "zz_mutate_schema.go")] = helper
		b, _ := json.Marshal(map[string]any{"Replace": ov})
		if err := os.WriteFile(ovPath, b, 0o644); err != nil {
			return "", err.Error()
		}
		build := exec.CommandContext(ctx, "go", "test", "-c", "-vet=off", "-gcflags=-e", "-ldflags="+ldflags, "-overlay="+ovPath, "-o", bin, p.Dir)
		build.Dir = r.moduleDir
		out, err := build.CombinedOutput()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", ctx.Err().Error()
		}
		// Leave out the files the errors name, and try again.
		dropped := false
		for abs := range sources {
			if bytes.Contains(out, []byte(filepath.Base(abs)+":")) {
				fmt.Printf("%s: %s's schema does not compile, its mutants are built one by one: %s\n",
					p.ImportPath, filepath.Base(abs), firstLines(string(out), 2))
				drop(abs)
				dropped = true
			}
		}
		if !dropped {
			return "", "the schema does not build: " + firstLines(string(out), 3)
		}
	}
	if len(sources) == 0 {
		return "", "no mutant can go in a schema"
	}
	n := 0
	for _, ms := range ids {
		n += len(ms)
	}
	p.schemaOverlay = ovPath
	fmt.Printf("%s: %d mutants in one schema binary (%d files), built in %s\n",
		p.ImportPath, n, len(sources), time.Since(start).Round(100*time.Millisecond))
	return bin, ""
}

// exportData lists the export data files of the package's dependencies
// (from the build cache; go list builds what is missing).
func exportData(ctx context.Context, moduleDir, dir string) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-export", "-deps", "-f", "{{if .Export}}{{.ImportPath}}={{.Export}}{{end}}", dir)
	cmd.Dir = moduleDir
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -export: %v", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

// qualifier names other packages' types as f imports them; a package f
// does not import makes the name invalid ("!").
func qualifier(f *ast.File, self *types.Package) types.Qualifier {
	names := map[string]string{}
	for _, is := range f.Imports {
		path, _ := strconv.Unquote(is.Path.Value)
		if is.Name != nil {
			names[path] = is.Name.Name
		} else {
			names[path] = ""
		}
	}
	return func(p *types.Package) string {
		if p == self {
			return ""
		}
		name, ok := names[p.Path()]
		switch {
		case !ok || name == "_" || name == ".":
			return "!"
		case name == "":
			return p.Name()
		}
		return name
	}
}

// schematic reports whether n can be written as a schema: not a constant,
// its operands' and result's types nameable, every mutation of it valid.
func schematic(n ast.Node, info *types.Info, q types.Qualifier) bool {
	nameable := func(e ast.Expr) bool {
		tv, ok := info.Types[e]
		if !ok || tv.Value != nil || isNil(tv) {
			return ok // a constant or nil goes in as written
		}
		s := typeName(tv.Type, q)
		return s != "" && !strings.Contains(s, "!")
	}
	switch n := n.(type) {
	case *ast.BinaryExpr:
		tv, ok := info.Types[n]
		if !ok || tv.Value != nil {
			return false
		}
		if b, ok := info.Types[n.X].Type.Underlying().(*types.Basic); ok && b.Info()&types.IsString != 0 {
			return false // '+' on strings: '-' does not compile
		}
		return nameable(n) && nameable(n.X) && nameable(n.Y)
	case *ast.UnaryExpr:
		tv, ok := info.Types[n]
		return ok && tv.Value == nil && nameable(n) && nameable(n.X)
	case *ast.IncDecStmt:
		return true
	}
	return false
}

func isNil(tv types.TypeAndValue) bool {
	b, ok := tv.Type.(*types.Basic)
	return ok && b.Kind() == types.UntypedNil
}

// typeName writes t as the file can name it; an untyped bool (a
// comparison's result) is bool.
func typeName(t types.Type, q types.Qualifier) string {
	if b, ok := t.(*types.Basic); ok && b.Info()&types.IsUntyped != 0 {
		if b.Kind() == types.UntypedBool {
			return "bool"
		}
		return ""
	}
	return types.TypeString(t, q)
}

type schemaWriter struct {
	src  []byte
	info *types.Info
	q    types.Qualifier
	off  func(token.Pos) int
}

// rewrite returns src[lo:hi] with every site in it written as a schema;
// sites is sorted by start, and every one of them starts in [lo, hi).
func (w *schemaWriter) rewrite(lo, hi int, sites []*site) string {
	var b strings.Builder
	at := lo
	for i := 0; i < len(sites); {
		s := sites[i]
		j := i + 1
		for j < len(sites) && sites[j].start < s.end {
			j++
		}
		b.Write(w.src[at:s.start])
		b.WriteString(w.site(s, sites[i+1:j]))
		at, i = s.end, j
	}
	b.Write(w.src[at:hi])
	return b.String()
}

// within returns the sites of inner that lie in e.
func (w *schemaWriter) within(e ast.Node, inner []*site) []*site {
	lo, hi := w.off(e.Pos()), w.off(e.End())
	var out []*site
	for _, s := range inner {
		if s.start >= lo && s.end <= hi {
			out = append(out, s)
		}
	}
	sortSites(out)
	return out
}

// sortSites sorts by start, and an enclosing site before those it holds.
func sortSites(s []*site) {
	sort.Slice(s, func(a, b int) bool {
		if s[a].start != s[b].start {
			return s[a].start < s[b].start
		}
		return s[a].end > s[b].end
	})
}

func (w *schemaWriter) expr(e ast.Expr, inner []*site) string {
	return w.rewrite(w.off(e.Pos()), w.off(e.End()), w.within(e, inner))
}

// operand returns what stands for e inside the function literal, and
// adds e as its argument unless it is a constant or nil (written as is).
func (w *schemaWriter) operand(e ast.Expr, inner []*site, name string, params, args *[]string) string {
	tv := w.info.Types[e]
	text := w.expr(e, inner)
	if tv.Value != nil || isNil(tv) {
		return "(" + text + ")"
	}
	*params = append(*params, name+" "+typeName(tv.Type, w.q))
	*args = append(*args, text)
	return name
}

func (w *schemaWriter) site(s *site, inner []*site) string {
	switch n := s.node.(type) {
	case *ast.IncDecStmt:
		x := w.expr(n.X, inner)
		other := "--"
		if n.Tok == token.DEC {
			other = "++"
		}
		return fmt.Sprintf("func() { if mutateActive == %d { %s%s } else { %s%s } }()", s.alts[0].schemaID, x, other, x, n.Tok)
	case *ast.BinaryExpr:
		var params, args []string
		x := w.operand(n.X, inner, "mutateX", &params, &args)
		y := w.operand(n.Y, inner, "mutateY", &params, &args)
		var b strings.Builder
		fmt.Fprintf(&b, "func(%s) %s { switch mutateActive {", strings.Join(params, ", "), typeName(w.info.Types[n].Type, w.q))
		for _, m := range s.alts {
			fmt.Fprintf(&b, " case %d: return %s %s %s;", m.schemaID, x, m.To, y)
		}
		fmt.Fprintf(&b, " }; return %s %s %s }(%s)", x, n.Op, y, strings.Join(args, ", "))
		return b.String()
	case *ast.UnaryExpr:
		var params, args []string
		x := w.operand(n.X, inner, "mutateX", &params, &args)
		var b strings.Builder
		fmt.Fprintf(&b, "func(%s) %s { switch mutateActive {", strings.Join(params, ", "), typeName(w.info.Types[n].Type, w.q))
		for _, m := range s.alts {
			fmt.Fprintf(&b, " case %d: return %s%s;", m.schemaID, m.To, x)
		}
		fmt.Fprintf(&b, " }; return %s%s }(%s)", n.Op, x, strings.Join(args, ", "))
		return b.String()
	}
	panic("schema: unexpected node")
}

// useSchema builds p's schema binary and checks it: every test that passes
// unmutated must pass with it, no mutant active (twice, in case one
// scenario fails for want of CPU), or no mutant of p is judged with it.
func (r *runner) useSchema(ctx context.Context, p *pkgInfo, jobs []*job) {
	unschema := func() {
		for _, j := range jobs {
			if j.p == p {
				j.m.schemaID = 0
			}
		}
	}
	bin, why := r.buildSchema(ctx, p, jobs)
	if bin == "" {
		fmt.Printf("%s: no schema binary, every mutant is built on its own: %s\n", p.ImportPath, why)
		unschema()
		return
	}
	start := time.Now()
	dur := func(i int) time.Duration { return p.cov.Tests[i].Duration }
	env := r.schemaEnv(p, 0)
	var res runResult
	for try := range 2 {
		var runs int
		res, _ = r.runWave(ctx, p, bin, env, p.passing, dur, &runs, r.procs*r.workers)
		if res.status == "" && res.err == nil {
			fmt.Printf("%s: the schema binary passes every test, no mutant active (%s)\n", p.ImportPath, time.Since(start).Round(time.Second))
			p.schemaBin = bin
			return
		}
		if try == 0 {
			fmt.Printf("%s: the schema binary failed %s with no mutant active; once more\n", p.ImportPath, res.killer)
		}
	}
	fmt.Printf("%s: no schema binary, every mutant is built on its own: it failed %s twice with no mutant active: %s\n",
		p.ImportPath, res.killer, firstLines(failureDetail(res.output, res.killer), 3))
	unschema()
}

// schemaEnv is the environment of a run of p's schema binary with mutant
// id active (0: none). A binary the tests build from the package (go build
// under the test) is built from the schema too, and the switch is in the
// environment it inherits.
func (r *runner) schemaEnv(p *pkgInfo, id int) []string {
	return r.testEnv([]string{
		schemaEnv + "=" + strconv.Itoa(id),
		"GOFLAGS=" + strings.TrimSpace(os.Getenv("GOFLAGS")+" -overlay="+p.schemaOverlay),
	})
}
