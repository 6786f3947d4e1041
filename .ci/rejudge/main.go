// Command rejudge re-runs the mutants that a fast gremlins run
// (.ci/mutation) did not kill: it applies each mutation to a scratch copy
// of the module, runs the fast tests there (CONN_SHORT=1: gremlins cannot
// see coverage of a case clause, and reports those mutants as not covered)
// and, if they pass, the full suite, and restores the file. A mutant that
// timed out under gremlins counts as killed: a test that never ends fails.
// It reads gremlins' JSON report and prints one line per mutant and a
// summary; with -o it also writes the verdicts as JSON.
//
//	go run ./.ci/rejudge -report fast.json -module . -timeout 3m -workers 2
//
// The long socket scenarios spend most of their time waiting on timers and
// sockets, not computing, so two workers fit on two cores; the scenarios
// must hold under load anyway.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/scanner"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The token substitutions of gremlins v0.6.0 (internal/engine/mappings.go),
// by mutation type.
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

type report struct {
	Files []struct {
		Name      string     `json:"file_name"`
		Mutations []mutation `json:"mutations"`
	} `json:"files"`
}

type mutation struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	File   string `json:"file,omitempty"`
	Killer string `json:"killer,omitempty"` // the first test that failed
}

func main() {
	var (
		reportPath = flag.String("report", "", "gremlins' JSON report")
		module     = flag.String("module", ".", "the module's root directory")
		pkg        = flag.String("pkg", ".", "the package whose tests judge the mutants")
		timeout    = flag.Duration("timeout", 3*time.Minute, "the bound of one go test run")
		out        = flag.String("o", "", "write the verdicts as JSON to this file")
		workers    = flag.Int("workers", 1, "mutants judged at once, each in its own copy of the module")
	)
	flag.Parse()
	if err := run(*reportPath, *module, *pkg, *timeout, *out, max(*workers, 1)); err != nil {
		fmt.Fprintln(os.Stderr, "rejudge:", err)
		os.Exit(2)
	}
}

// rejudged are the statuses left for the full suite: mutants the fast tests
// let live or did not cover.
var rejudged = map[string]bool{"LIVED": true, "NOT COVERED": true}

func run(reportPath, module, pkg string, timeout time.Duration, out string, workers int) error {
	data, err := os.ReadFile(reportPath)
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		return err
	}
	var (
		todo  []mutation
		count = map[string]int{}
	)
	for _, f := range rep.Files {
		for _, m := range f.Mutations {
			if !rejudged[m.Status] {
				count[m.Status]++
				continue
			}
			m.File = f.Name
			todo = append(todo, m)
		}
	}

	verdicts := make([]mutation, len(todo))
	next := make(chan int)
	errs := make(chan error, workers)
	var (
		wg sync.WaitGroup
		mu sync.Mutex // serialises the progress lines
	)
	for range workers {
		wg.Go(func() {
			scratch, err := os.MkdirTemp("", "rejudge")
			if err != nil {
				errs <- err
				return
			}
			defer os.RemoveAll(scratch)
			if err := exec.Command("cp", "-a", filepath.Clean(module)+"/.", scratch).Run(); err != nil {
				errs <- fmt.Errorf("copying the module: %w", err)
				return
			}
			for i := range next {
				m := todo[i]
				status, killer, err := judge(scratch, pkg, m, timeout)
				if err != nil {
					errs <- fmt.Errorf("%s:%d:%d %s: %w", m.File, m.Line, m.Column, m.Type, err)
					return
				}
				mu.Lock()
				fmt.Printf("%-12s %s at %s:%d:%d (fast tests: %s) %s\n", status, m.Type, m.File, m.Line, m.Column, m.Status, killer)
				mu.Unlock()
				m.Status, m.Killer = status, killer
				verdicts[i] = m
			}
		})
	}
	var failed error
feed:
	for i := range todo {
		select {
		case next <- i:
		case failed = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if failed != nil {
		return failed
	}
	select {
	case err := <-errs:
		return err
	default:
	}
	for _, v := range verdicts {
		count[v.Status]++
	}
	killed, lived := count["KILLED"]+count["TIMED OUT"], count["LIVED"]
	fmt.Printf("\nkilled %d (%d by timing out), lived %d, not viable %d; gremlins' run killed %d, this one judged %d\n",
		killed, count["TIMED OUT"], lived, count["NOT VIABLE"], killed-countStatus(verdicts, "KILLED"), len(verdicts))
	if killed+lived > 0 {
		fmt.Printf("efficacy: %.1f%% (killed / (killed + lived); a mutant no test covers counts as lived)\n", 100*float64(killed)/float64(killed+lived))
	}
	if lived > 0 {
		fmt.Println("survivors:")
		for _, v := range verdicts {
			if v.Status == "LIVED" {
				fmt.Printf("  %s at %s:%d:%d\n", v.Type, v.File, v.Line, v.Column)
			}
		}
	}
	if out != "" {
		b, _ := json.MarshalIndent(verdicts, "", "  ")
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func countStatus(ms []mutation, status string) int {
	n := 0
	for _, m := range ms {
		if m.Status == status {
			n++
		}
	}
	return n
}

// judge applies m in the scratch module, runs the tests and restores the
// file. It returns KILLED (with the first test that failed), LIVED or NOT
// VIABLE.
func judge(scratch, pkg string, m mutation, timeout time.Duration) (status, killer string, err error) {
	path := filepath.Join(scratch, m.File)
	orig, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	mutated, err := apply(orig, m)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(path, mutated, 0o644); err != nil {
		return "", "", err
	}
	defer os.WriteFile(path, orig, 0o644)
	for _, short := range []bool{true, false} {
		bound := timeout
		if short {
			bound = min(timeout, time.Minute) // the fast tests take seconds
		}
		status, killer, err := test(scratch, pkg, short, bound)
		if err != nil || status != "LIVED" {
			return status, killer, err
		}
	}
	return "LIVED", "", nil
}

// test runs go test on pkg in dir, with the fast tests only if short. It
// returns KILLED (with the first test that failed), LIVED or NOT VIABLE.
func test(dir, pkg string, short bool, timeout time.Duration) (status, killer string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-failfast", "-timeout", timeout.String(), pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CONN_SHORT=")
	if short {
		cmd.Env = append(cmd.Env, "CONN_SHORT=1")
	}
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return "LIVED", "", nil
	case errors.As(err, &exit) && strings.Contains(output.String(), "[build failed]"):
		return "NOT VIABLE", "", nil
	case errors.As(err, &exit):
		for _, line := range strings.Split(output.String(), "\n") {
			if strings.HasPrefix(line, "--- FAIL: ") || strings.HasPrefix(line, "panic: ") {
				return "KILLED", strings.TrimSpace(line), nil
			}
		}
		return "KILLED", "", nil
	}
	return "", "", err
}

// apply returns src with the token at m's position replaced as m's type
// says.
func apply(src []byte, m mutation) ([]byte, error) {
	fset := token.NewFileSet()
	file := fset.AddFile(m.File, -1, len(src))
	var s scanner.Scanner
	s.Init(file, src, nil, 0)
	for {
		pos, tok, _ := s.Scan()
		if tok == token.EOF {
			return nil, errors.New("no token at that position")
		}
		p := fset.Position(pos)
		if p.Line != m.Line || p.Column != m.Column {
			continue
		}
		to, ok := mutations[m.Type][tok]
		if !ok {
			return nil, fmt.Errorf("%s does not apply to %q", m.Type, tok)
		}
		off := p.Offset
		return append(append(append([]byte{}, src[:off]...), to.String()...), src[off+len(tok.String()):]...), nil
	}
}
