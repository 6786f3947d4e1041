package main

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The token substitutions of gremlins v0.6.0 (internal/engine/mappings.go),
// by mutation type, as .ci/rejudge held them.
var mutations = map[string]map[token.Token]token.Token{
	"ARITHMETIC_BASE":       {token.ADD: token.SUB, token.MUL: token.QUO, token.QUO: token.MUL, token.REM: token.MUL, token.SUB: token.ADD},
	"CONDITIONALS_BOUNDARY": {token.GEQ: token.GTR, token.GTR: token.GEQ, token.LEQ: token.LSS, token.LSS: token.LEQ},
	"CONDITIONALS_NEGATION": {token.EQL: token.NEQ, token.GEQ: token.LSS, token.GTR: token.LEQ, token.LEQ: token.GTR, token.LSS: token.GEQ, token.NEQ: token.EQL},
	"INCREMENT_DECREMENT":   {token.DEC: token.INC, token.INC: token.DEC},
	"INVERT_NEGATIVES":      {token.SUB: token.ADD},
	"INVERT_LOGICAL":        {token.LAND: token.LOR, token.LOR: token.LAND},
	"INVERT_LOOPCTRL":       {token.BREAK: token.CONTINUE, token.CONTINUE: token.BREAK},
	"INVERT_ASSIGNMENTS":    {token.ADD_ASSIGN: token.SUB_ASSIGN, token.MUL_ASSIGN: token.QUO_ASSIGN, token.QUO_ASSIGN: token.MUL_ASSIGN, token.SUB_ASSIGN: token.ADD_ASSIGN},
}

// operatorOrder is the order in which the types are tried on a token, as
// gremlins' TokenMutantType lists them (for a '-': INVERT_NEGATIVES, then
// ARITHMETIC_BASE).
var operatorOrder = []string{
	"INVERT_NEGATIVES", "ARITHMETIC_BASE", "CONDITIONALS_BOUNDARY", "CONDITIONALS_NEGATION",
	"INCREMENT_DECREMENT", "INVERT_LOGICAL", "INVERT_LOOPCTRL", "INVERT_ASSIGNMENTS",
}

// defaultOperators are the types gremlins v0.6.0 enables when it is not
// told otherwise (internal/configuration/mutantenabled.go), the set every
// figure in RELIABILITY.md was measured with.
var defaultOperators = []string{
	"ARITHMETIC_BASE", "CONDITIONALS_BOUNDARY", "CONDITIONALS_NEGATION",
	"INCREMENT_DECREMENT", "INVERT_NEGATIVES",
}

// A mutant is one token of one file replaced.
type mutant struct {
	Pkg      string `json:"package"`  // import path
	File     string `json:"file"`     // relative to the module's root
	Line     int    `json:"line"`     // 1-based
	Col      int    `json:"col"`      // 1-based, in bytes
	Operator string `json:"operator"` // gremlins' mutation type
	From     string `json:"from"`
	To       string `json:"to"`
	Source   string `json:"source"` // the line, unmutated, trimmed

	Status   string   `json:"status"`
	Killer   string   `json:"killer,omitempty"`    // the first test that failed or hung
	Detail   string   `json:"detail,omitempty"`    // a little of the output that says why
	Tests    int      `json:"tests"`               // covering tests
	Seconds  float64  `json:"seconds"`             // spent judging it (0 if cached or not run)
	Build    float64  `json:"build_seconds"`       // of which building
	Runs     int      `json:"runs"`                // test processes started
	Relinked bool     `json:"relinked,omitempty"`  // built by the relinker
	InSchema bool     `json:"in_schema,omitempty"` // judged with the package's schema binary
	Flaky    []string `json:"flaky,omitempty"`     // tests that failed beside others but passed alone twice
	Cached   bool     `json:"cached,omitempty"`
	SameAs   string   `json:"same_as,omitempty"` // the operator of an identical mutant judged with it

	offset  int        // of the token in the file
	path    []ast.Node // the token's node and its ancestors, innermost first
	absFile string
	fset    *token.FileSet
	covered []int // indices of the tests that reach it, fastest first
	// schemaID selects it in its package's schema binary (0: not in one,
	// built on its own).
	schemaID int
}

func (m *mutant) pos() string { return fmt.Sprintf("%s:%d:%d", m.File, m.Line, m.Col) }

// findMutants lists the mutants of one file, in gremlins' way: every
// assignment, binary, branch, inc/dec and unary token with a substitution
// among the enabled types, each type separately (so a '-' yields two
// identical mutants, INVERT_NEGATIVES and ARITHMETIC_BASE, as gremlins
// counts it).
func findMutants(pkg, rel, abs string, src []byte, ops map[string]bool) ([]*mutant, *token.FileSet, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, abs, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, nil, err
	}
	lines := bytes.Split(src, []byte("\n"))
	var (
		out   []*mutant
		stack []ast.Node
	)
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		stack = append(stack, n)
		var (
			tok token.Token
			at  token.Pos
		)
		switch n := n.(type) {
		case *ast.AssignStmt:
			tok, at = n.Tok, n.TokPos
		case *ast.BinaryExpr:
			tok, at = n.Op, n.OpPos
		case *ast.BranchStmt:
			tok, at = n.Tok, n.TokPos
		case *ast.IncDecStmt:
			tok, at = n.Tok, n.TokPos
		case *ast.UnaryExpr:
			tok, at = n.Op, n.OpPos
		default:
			return true
		}
		p := fset.Position(at)
		for _, op := range operatorOrder {
			to, ok := mutations[op][tok]
			if !ok || !ops[op] {
				continue
			}
			path := slices.Clone(stack)
			slices.Reverse(path)
			out = append(out, &mutant{
				Pkg: pkg, File: rel, Line: p.Line, Col: p.Column, Operator: op,
				From: tok.String(), To: to.String(),
				Source: strings.TrimSpace(string(lines[p.Line-1])),
				offset: p.Offset, path: path, absFile: abs,
			})
		}
		return true
	})
	return out, fset, nil
}

// apply returns src with m's token replaced.
func apply(src []byte, m *mutant) ([]byte, error) {
	if !bytes.HasPrefix(src[m.offset:], []byte(m.From)) {
		return nil, fmt.Errorf("%s: %q is not at offset %d", m.pos(), m.From, m.offset)
	}
	out := make([]byte, 0, len(src)+2)
	out = append(out, src[:m.offset]...)
	out = append(out, m.To...)
	return append(out, src[m.offset+len(m.From):]...), nil
}

var hunkHeader = regexp.MustCompile(`^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@`)

// changedLines returns, for each of files (absolute paths), the lines that
// differ from revision base in the working tree: added or changed lines
// only (a pure deletion leaves nothing to mutate). A file git does not
// track counts as changed throughout.
func changedLines(moduleDir, base string, files []string) (map[string]map[int]bool, error) {
	out := map[string]map[int]bool{}
	if err := exec.Command("git", "-C", moduleDir, "rev-parse", "--verify", "--quiet", base+"^{commit}").Run(); err != nil {
		return nil, fmt.Errorf("-diff %s: not a git revision", base)
	}
	for _, f := range files {
		if exec.Command("git", "-C", moduleDir, "ls-files", "--error-unmatch", "--", f).Run() != nil {
			out[f] = nil // untracked: every line
			continue
		}
		cmd := exec.Command("git", "-C", moduleDir, "diff", "--no-color", "--no-ext-diff", "-U0", base, "--", f)
		diff, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("git diff %s -- %s: %v", base, f, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(diff))
		for sc.Scan() {
			m := hunkHeader.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			start, _ := strconv.Atoi(m[1])
			n := 1
			if m[2] != "" {
				n, _ = strconv.Atoi(m[2])
			}
			for l := start; l < start+n; l++ {
				if out[f] == nil {
					out[f] = map[int]bool{}
				}
				out[f][l] = true
			}
		}
		if _, ok := out[f]; !ok {
			out[f] = map[int]bool{} // unchanged
		}
	}
	return out, nil
}
