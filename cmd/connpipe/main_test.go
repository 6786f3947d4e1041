package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The end-to-end tests run the command as a binary, built once per test
// process (with -race when the tests run with it) into a temporary
// directory that is removed after the leak check.
var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	}))
}

// binary returns the path of the connpipe binary, building it on first use.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		gotool, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
		if err != nil {
			buildErr = err
			return
		}
		binDir, buildErr = os.MkdirTemp("", "connpipe-test")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "connpipe")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, gotool, append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building connpipe: %v", buildErr)
	}
	return binPath
}

// result is how a run of the binary ended.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// command returns the binary's command for args, killed if it outlives
// timeout or the test.
func command(t *testing.T, timeout time.Duration, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.WaitDelay = 5 * time.Second
	// A race-enabled binary sleeps a second at exit by default, and exits
	// with status 66 if it found a race, which the tests see.
	cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// runBinary runs the binary with args and stdin to completion, within
// timeout.
func runBinary(t *testing.T, timeout time.Duration, stdin io.Reader, args ...string) result {
	t.Helper()
	cmd := command(t, timeout, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("connpipe %s: %v\nstderr:\n%s", strings.Join(args, " "), err, r.stderr)
	}
	return r
}

// startWatched starts cmd with its stderr, and its stdout unless the
// caller set one, on pipes of the test's own (not exec's, which Wait
// closes, perhaps before all was read), and returns what they carry.
// Their read ends see EOF when the process has exited.
func startWatched(t *testing.T, cmd *exec.Cmd) (stdout, stderr *watched) {
	t.Helper()
	var toClose []*os.File
	pipe := func() *os.File {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		toClose = append(toClose, w)
		t.Cleanup(func() { r.Close() })
		return r
	}
	var outR *os.File
	if cmd.Stdout == nil {
		outR = pipe()
		cmd.Stdout = toClose[len(toClose)-1]
	}
	errR := pipe()
	cmd.Stderr = toClose[len(toClose)-1]
	err := cmd.Start()
	for _, w := range toClose {
		w.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if outR != nil {
		stdout = watch(outR)
	}
	return stdout, watch(errR)
}

// waitExit waits for a started command, within timeout, and returns its
// exit code. It fails the test if a signal ended it.
func waitExit(t *testing.T, cmd *exec.Cmd, timeout time.Duration) int {
	t.Helper()
	code, sig := waitEnd(t, cmd, timeout)
	if sig != 0 {
		t.Fatalf("connpipe ended by signal %v, want an exit", sig)
	}
	return code
}

// waitEnd waits for a started command, within timeout, and returns its
// exit code, or the signal that ended it (code -1).
func waitEnd(t *testing.T, cmd *exec.Cmd, timeout time.Duration) (code int, sig syscall.Signal) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("connpipe: %v", err)
		}
		return endOf(cmd.ProcessState)
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("connpipe did not exit within %v", timeout)
	}
	return -1, 0
}

// endOf returns how a process ended: its exit code, or the signal that
// ended it (code -1).
func endOf(ps *os.ProcessState) (code int, sig syscall.Signal) {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, ws.Signal()
	}
	return ps.ExitCode(), 0
}

// wantSignaled fails the test unless a process ended by sig, as a
// command interrupted by it must (a shell shows 128 + its number). A
// process that exited with 128 + sig's number would do for a shell too,
// but connpipe exits so only if the signal was ignored at its start.
func wantSignaled(t *testing.T, code int, got, want syscall.Signal, stderr string) {
	t.Helper()
	if got != want {
		t.Errorf("connpipe ended with exit status %d, signal %v; want it ended by %v; stderr:\n%s", code, got, want, stderr)
	}
}
