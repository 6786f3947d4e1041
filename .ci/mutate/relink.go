package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A relinker builds a mutant's test binary in about a third of the time
// go test -c takes: it compiles the mutated package alone and links it
// with the other objects of a reference build (its test packages, the test
// main, the dependencies).
//
// go test -c recompiles every package that imports the mutated one (the
// external test package, conn_test, is the biggest part of a build),
// because a package's build ID covers its whole object file. What those
// packages were compiled against is only the mutated package's export
// data, though, and the linker checks that: each import records the
// fingerprint of the export data it was compiled against, and a link with
// a package whose fingerprint differs fails ("fingerprint mismatch"). A
// mutant in a function whose body is not exported (not inlinable) links;
// one in an inlinable function does not, and is built again with go test
// -c -overlay, as every mutant would be without the relinker.
//
// The reference build is go test -c -work -x, whose commands for the
// package's compile and for the link are replayed with the mutated file in
// place of the original.
type relinker struct {
	work       string // the reference build's $WORK, kept for its importcfg files
	compile    []string
	compileEnv []string
	compileDir string
	compileOut int // index of the -o value
	trimpath   int // index of the -trimpath value, or -1
	link       []string
	linkEnv    []string
	linkDir    string
	linkOut    int
	linkCfg    int      // index of the -importcfg value
	importcfg  []string // the lines of the link's importcfg
	pkgLine    int      // the line that names the package's object
	// inlinable holds "file:line" of every function the compiler can
	// inline: a mutant in one changes the export data, so it is built in
	// full at once.
	inlinable map[string]bool
}

// inInlinable reports whether m lies in a function (or a closure of one)
// that the compiler can inline.
func (rl *relinker) inInlinable(m *mutant) bool {
	for _, n := range m.path {
		switch n.(type) {
		case *ast.FuncDecl, *ast.FuncLit:
			if rl.inlinable[fmt.Sprintf("%s:%d", m.absFile, m.fset.Position(n.Pos()).Line)] {
				return true
			}
		}
	}
	return false
}

// newRelinker makes the reference build of p's tests. It returns nil (and
// why) if the commands cannot be made out.
func newRelinker(ctx context.Context, r *runner, p *pkgInfo, ldflags string) (*relinker, error) {
	dir := filepath.Join(r.tmp, "reference-"+p.short)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// An extra compile flag (-D, the directory of local imports, which
	// modules do not have) and link flag (-X of a variable that does not
	// exist), with a value of their own, make both steps run, and show,
	// whatever the build cache holds.
	nonce := fmt.Sprintf("%d", time.Now().UnixNano())
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-work", "-x", "-vet=off",
		"-gcflags="+p.ImportPath+"=-D=/mutate-reference-"+nonce, "-ldflags="+ldflags+" -X=main.mutateReferenceNonce="+nonce,
		"-overlay="+p.overlay, "-o", filepath.Join(dir, "reference.test"), p.Dir)
	cmd.Dir = r.moduleDir
	out, err := cmd.CombinedOutput()
	lines := strings.Split(string(out), "\n")
	rl := &relinker{trimpath: -1}
	if len(lines) > 0 && strings.HasPrefix(lines[0], "WORK=") {
		rl.work = strings.TrimPrefix(lines[0], "WORK=")
		r.cleanup = append(r.cleanup, rl.work)
	}
	if err != nil {
		return nil, fmt.Errorf("reference build: %v\n%s", err, tail(string(out), 10))
	}
	if rl.work == "" {
		return nil, errors.New("reference build: no WORK directory in go test -x's output")
	}
	// The file the package's compile must name: one of its own, as the
	// overlay has it.
	if len(p.mutable) == 0 {
		return nil, errors.New("no files to mutate")
	}
	own := p.snapshot[p.mutable[0]]
	cwd := r.moduleDir
	for _, l := range lines {
		if d, ok := strings.CutPrefix(l, "cd "); ok {
			if cwd = strings.TrimSpace(d); !filepath.IsAbs(cwd) {
				cwd = filepath.Join(r.moduleDir, cwd)
			}
			continue
		}
		words, err := shellWords(l, rl.work)
		if err != nil || len(words) == 0 {
			continue
		}
		var env []string
		for len(words) > 0 && isAssignment(words[0]) {
			env, words = append(env, words[0]), words[1:]
		}
		if len(words) == 0 {
			continue
		}
		switch filepath.Base(words[0]) {
		case "compile":
			if slices.Contains(words, own) {
				if rl.compile != nil {
					return nil, errors.New("reference build: two compiles of the package")
				}
				rl.compile, rl.compileEnv, rl.compileDir = words, env, cwd
			}
		case "link":
			rl.link, rl.linkEnv, rl.linkDir = words, env, cwd
		}
	}
	if rl.compile == nil || rl.link == nil {
		return nil, errors.New("reference build: the package's compile or the link is not in go test -x's output")
	}
	if slices.Contains(rl.compile, "-symabis") || slices.Contains(rl.compile, "-asmhdr") || !slices.Contains(rl.compile, "-pack") {
		return nil, errors.New("reference build: the package has assembly")
	}
	rl.compileOut = slices.Index(rl.compile, "-o") + 1
	if i := slices.Index(rl.compile, "-trimpath"); i >= 0 {
		rl.trimpath = i + 1
	}
	rl.linkOut = slices.Index(rl.link, "-o") + 1
	rl.linkCfg = slices.Index(rl.link, "-importcfg") + 1
	if rl.compileOut == 0 || rl.linkOut == 0 || rl.linkCfg == 0 || rl.compileOut >= len(rl.compile) || rl.linkCfg >= len(rl.link) {
		return nil, errors.New("reference build: no -o or -importcfg")
	}
	cfg, err := os.ReadFile(rl.link[rl.linkCfg])
	if err != nil {
		return nil, fmt.Errorf("reference build: %v", err)
	}
	rl.importcfg = strings.Split(string(cfg), "\n")
	rl.pkgLine = -1
	for i, l := range rl.importcfg {
		if strings.HasPrefix(l, "packagefile ") && strings.HasSuffix(l, "="+rl.compile[rl.compileOut]) {
			rl.pkgLine = i
		}
	}
	if rl.pkgLine < 0 {
		return nil, errors.New("reference build: the link's importcfg does not name the package's object")
	}
	// What the compiler can inline (-m); without it, every mutant tries
	// the relinker first.
	args := slices.Clone(rl.compile)
	args[rl.compileOut] = filepath.Join(dir, "inline.a")
	args = append(args[:len(args):len(args)], "-m")
	m := exec.CommandContext(ctx, args[0], args[1:]...)
	m.Dir, m.Env = rl.compileDir, append(os.Environ(), rl.compileEnv...)
	diag, _ := m.CombinedOutput()
	rl.inlinable = map[string]bool{}
	for _, l := range strings.Split(string(diag), "\n") {
		pos, what, ok := strings.Cut(l, ": can inline ")
		if !ok || strings.Contains(what, "deferwrap") {
			continue
		}
		f := strings.Split(pos, ":")
		if len(f) < 3 {
			continue
		}
		file := strings.Join(f[:len(f)-2], ":")
		if !filepath.IsAbs(file) {
			file = filepath.Join(rl.compileDir, file)
		}
		rl.inlinable[file+":"+f[len(f)-2]] = true
	}
	return rl, nil
}

// build compiles the package with src (the mutated file, in work) in place
// of the file orig, and links the test binary bin. It returns the
// compiler's output if the mutant does not compile, and relinked false
// (with no error) if the link refuses it: the mutant changed the export
// data, and needs a full build.
func (rl *relinker) build(ctx context.Context, orig, snap, src, work, bin string) (compileErr string, relinked bool, err error) {
	args := slices.Clone(rl.compile)
	found := false
	for i, a := range args {
		if a == snap {
			args[i], found = src, true
		}
	}
	if !found {
		return "", false, nil
	}
	if rl.trimpath >= 0 {
		args[rl.trimpath] = src + "=>" + orig + ";" + args[rl.trimpath]
	}
	obj := filepath.Join(work, "package.a")
	args[rl.compileOut] = obj
	compile := exec.CommandContext(ctx, args[0], args[1:]...)
	compile.Dir, compile.Env = rl.compileDir, append(os.Environ(), rl.compileEnv...)
	if out, err := compile.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return "", false, ctx.Err()
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), false, nil
		}
		return "", false, err
	}
	cfg := slices.Clone(rl.importcfg)
	name, _, _ := strings.Cut(cfg[rl.pkgLine], "=")
	cfg[rl.pkgLine] = name + "=" + obj
	cfgPath := filepath.Join(work, "importcfg.link")
	if err := os.WriteFile(cfgPath, []byte(strings.Join(cfg, "\n")), 0o644); err != nil {
		return "", false, err
	}
	largs := slices.Clone(rl.link)
	largs[rl.linkOut], largs[rl.linkCfg] = bin, cfgPath
	link := exec.CommandContext(ctx, largs[0], largs[1:]...)
	link.Dir, link.Env = rl.linkDir, append(os.Environ(), rl.linkEnv...)
	if out, err := link.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return "", false, ctx.Err()
		}
		if !strings.Contains(string(out), "fingerprint mismatch") {
			fmt.Fprintf(os.Stderr, "mutate: relinking failed (building in full instead): %v\n%s", err, tail(string(out), 5))
		}
		return "", false, nil
	}
	return "", true, nil
}

func isAssignment(w string) bool {
	k, _, ok := strings.Cut(w, "=")
	if !ok || k == "" {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// shellWords splits a command line as go test -x prints it (sh syntax:
// single and double quotes, backslashes), with $WORK replaced by work.
// Lines that are not plain commands (heredocs, redirections) are refused.
func shellWords(line, work string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // a word is under way
	)
	rd := bufio.NewReader(strings.NewReader(line))
	for {
		c, _, err := rd.ReadRune()
		if err != nil {
			break
		}
		switch {
		case c == ' ' || c == '\t':
			if in {
				words, in = append(words, cur.String()), false
				cur.Reset()
			}
		case c == '\'':
			in = true
			for {
				c, _, err := rd.ReadRune()
				if err != nil {
					return nil, errors.New("unterminated quote")
				}
				if c == '\'' {
					break
				}
				cur.WriteRune(c)
			}
		case c == '"':
			in = true
			for {
				c, _, err := rd.ReadRune()
				if err != nil {
					return nil, errors.New("unterminated quote")
				}
				if c == '"' {
					break
				}
				if c == '\\' {
					n, _, err := rd.ReadRune()
					if err != nil {
						return nil, errors.New("unterminated quote")
					}
					if !strings.ContainsRune("\"\\$`", n) {
						cur.WriteRune(c)
					}
					c = n
				} else if c == '$' {
					if expandWork(rd, &cur, work) {
						continue
					}
				}
				cur.WriteRune(c)
			}
		case c == '\\':
			n, _, err := rd.ReadRune()
			if err != nil {
				return nil, errors.New("trailing backslash")
			}
			in = true
			cur.WriteRune(n)
		case c == '$':
			in = true
			if !expandWork(rd, &cur, work) {
				cur.WriteRune(c)
			}
		case strings.ContainsRune("<>|;&#()`", c):
			if c == '#' && !in {
				return words, nil // a comment ("# internal")
			}
			return nil, errors.New("not a plain command")
		default:
			in = true
			cur.WriteRune(c)
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// expandWork writes work for "$WORK" (the '$' already read) and reports
// whether it did; otherwise it consumes nothing.
func expandWork(rd *bufio.Reader, cur *strings.Builder, work string) bool {
	b, err := rd.Peek(4)
	if err != nil || string(b) != "WORK" {
		return false
	}
	rd.Discard(4)
	cur.WriteString(work)
	return true
}
