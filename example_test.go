package conn_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"

	"github.com/seed44b27a20/conn"
)

// A Manager is an io.Writer that keeps its connection alive: here a go-kit
// logger writes logfmt lines through it to a TCP server.
func Example() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	received := make(chan string)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		received <- line
	}()

	m := conn.NewDefaultManager("tcp", ln.Addr().String(), log.NewNopLogger())
	defer m.Close()
	logger := log.NewLogfmtLogger(m)
	logger.Log("msg", "hello", "answer", 42)

	fmt.Print(<-received)
	// Output: msg=hello answer=42
}

// New takes functional options; WithStateHook feeds state changes to your
// own metrics.
func ExampleNew() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()

	states := make(chan conn.State, 8)
	m := conn.New("tcp", ln.Addr().String(),
		conn.WithDialTimeout(2*time.Second),
		conn.WithWriteTimeout(5*time.Second),
		conn.WithBackoff(100*time.Millisecond, 10*time.Second),
		conn.WithStateHook(func(ev conn.Event) { states <- ev.State }),
	)
	fmt.Println(m.Take() != nil)
	m.Close()
	fmt.Println(<-states, <-states)
	// Output:
	// true
	// connected closed
}

// WithSlogLogger sends the Manager's state changes to a *slog.Logger.
func ExampleWithSlogLogger() {
	handler := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // keep the output stable
			}
			return a
		},
	})
	pipe := func(context.Context, string, string) (net.Conn, error) {
		c, _ := net.Pipe()
		return c, nil
	}
	m := conn.New("tcp", "logs.example:514", conn.WithDialer(pipe), conn.WithSlogLogger(slog.New(handler)))
	m.Take()
	m.Close()
	// Output:
	// level=INFO msg=connected network=tcp address=logs.example:514
	// level=INFO msg=closed network=tcp address=logs.example:514
}

// Take and Put are the go-kit API: Take the connection, use it, and Put back
// the error it gave. A nil connection means there is none right now.
func ExampleManager_Take() {
	pipe := func(context.Context, string, string) (net.Conn, error) {
		c, peer := net.Pipe()
		peer.Close() // the peer is gone: writes fail
		return c, nil
	}
	m := conn.New("tcp", "metrics.example:2003", conn.WithDialer(pipe))
	defer m.Close()

	c := m.Take()
	if c == nil {
		fmt.Println("no connection")
		return
	}
	_, err := c.Write([]byte("requests 1 1700000000\n"))
	m.Put(err) // invalidates the connection; the Manager redials after a backoff
	fmt.Println(err != nil, m.Take() == nil)
	// Output: true true
}

// Exponential doubles a duration with ±50% jitter, never beyond a minute.
func ExampleExponential() {
	d := conn.Exponential(time.Second)
	fmt.Println(d >= time.Second && d <= 3*time.Second)
	fmt.Println(conn.Exponential(time.Hour) <= time.Minute)
	// Output:
	// true
	// true
}

// After Close, Write fails with ErrClosed and Take returns nil.
func ExampleManager_Close() {
	m := conn.New("tcp", "127.0.0.1:1")
	m.Close()
	_, err := m.Write([]byte("late"))
	fmt.Println(err, m.Take() == nil)
	// Output: conn: manager closed true
}

// A BatchWriter queues log lines in memory and ships them in the background,
// coalesced into large writes: the logger never waits on the network.
func ExampleBatchWriter() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	received := make(chan []string)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var lines []string
		r := bufio.NewScanner(c)
		for len(lines) < 3 && r.Scan() {
			lines = append(lines, r.Text())
		}
		received <- lines
	}()

	m := conn.New("tcp", ln.Addr().String())
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithBufferSize(1<<20))
	logger := log.NewLogfmtLogger(w) // one Write, one message, per log line
	for i := range 3 {
		logger.Log("msg", "request served", "n", i)
	}
	if err := w.Close(); err != nil { // flushes; the Manager stays open
		fmt.Println(err)
	}
	for _, line := range <-received {
		fmt.Println(line)
	}
	st := w.Stats()
	fmt.Println(st.Accepted, st.Written, st.Dropped)
	// Output:
	// msg="request served" n=0
	// msg="request served" n=1
	// msg="request served" n=2
	// 3 3 0
}

// noTime drops slog's time attribute, to keep the examples' output stable.
func noTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}

// A slog JSON handler over a BatchWriter over a Manager: logging never
// waits on the network. Close the BatchWriter first: it writes what is
// still queued through the Manager, which must still be open.
func ExampleNewBatchWriter_slog() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // the collector
	defer ln.Close()
	received := make(chan []string)
	go func() {
		var lines []string
		defer func() { received <- lines }()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s := bufio.NewScanner(c)
		for s.Scan() { // until the Manager closes the connection
			lines = append(lines, s.Text())
		}
	}()

	m := conn.New("tcp", ln.Addr().String())
	w := conn.NewBatchWriter(m)
	logger := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: noTime}))

	logger.Info("started", "version", "1.4.2")
	logger.Warn("disk almost full", "free_mb", 512)

	if err := w.Close(); err != nil { // writes what is queued, within 5 s
		fmt.Println(err)
	}
	m.Close()
	for _, line := range <-received {
		fmt.Println(line)
	}
	// Output:
	// {"level":"INFO","msg":"started","version":"1.4.2"}
	// {"level":"WARN","msg":"disk almost full","free_mb":512}
}

// WithDropHook hears about drops as they happen, since slog discards the
// error of the Write that dropped a line: here the collector is down, the
// queue holds four lines and refuses the fifth, and Close discards the
// four when its time is up.
func ExampleWithDropHook() {
	down := func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("connection refused")
	}
	m := conn.New("tcp", "logs.example:5000", conn.WithDialer(down))
	defer m.Close()
	reports := make(chan conn.DropReport, 2)
	w := conn.NewBatchWriter(m,
		conn.WithBufferSize(256),
		conn.WithCloseTimeout(50*time.Millisecond),
		conn.WithDropHook(func(r conn.DropReport) { reports <- r }),
	)
	logger := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: noTime}))

	for i := range 5 {
		logger.Info("request served", "n", i) // 46 bytes, 54 of the buffer
	}
	r := <-reports // the first drop is reported at once
	fmt.Println("rejected:", r.Rejected, r.Err)
	fmt.Println(w.Close())
	r = <-reports // the last report comes from Close
	fmt.Println("discarded:", r.Discarded, r.Err)
	st := w.Stats()
	fmt.Println("accepted:", st.Accepted, "dropped:", st.Dropped)
	// Output:
	// rejected: 1 conn: buffer full
	// conn: messages left unwritten: 4 dropped
	// discarded: 4 conn: messages left unwritten
	// accepted: 4 dropped: 5
}

// A test of code that uses a Manager can fake the network and the clock:
// WithDialer hands out one end of a net.Pipe (or fails, as a collector
// that is down), and WithAfterFunc turns each backoff wait into a channel
// the test fires when it chooses.
func ExampleWithAfterFunc() {
	var dials atomic.Int32
	peers := make(chan net.Conn, 1)
	dial := func(context.Context, string, string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return nil, errors.New("connection refused") // the first dial fails
		}
		c, peer := net.Pipe()
		peers <- peer
		return c, nil
	}
	waits := make(chan time.Duration, 1)
	fire := make(chan time.Time)
	after := func(d time.Duration) <-chan time.Time {
		waits <- d
		return fire
	}
	connected := make(chan struct{}, 1)
	hook := func(ev conn.Event) {
		if ev.State == conn.Connected {
			connected <- struct{}{}
		}
	}
	m := conn.New("tcp", "collector.test:5000",
		conn.WithDialer(dial), conn.WithAfterFunc(after), conn.WithStateHook(hook))
	defer m.Close()

	d := <-waits // the Manager backs off: 1 s ±50% after the first failure
	fmt.Println("asked to wait 0.5-1.5 s:", d >= 500*time.Millisecond && d <= 1500*time.Millisecond)
	fire <- time.Now() // the wait is over, at once
	<-connected
	peer := <-peers
	defer peer.Close()

	go m.Write([]byte("hello\n")) // a net.Pipe Write waits for the peer to read
	line, _ := bufio.NewReader(peer).ReadString('\n')
	fmt.Print(line)
	// Output:
	// asked to wait 0.5-1.5 s: true
	// hello
}

// TestFakeTimeRecipe is the README's recipe for testing code that uses a
// Manager in fake time: inside a synctest bubble, a net.Pipe's deadlines
// and the Manager's timers and backoff run on the bubble's clock, so a
// 5 s write timeout and a 1 s backoff take no real time and are measured
// exactly.
func TestFakeTimeRecipe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peers := make(chan net.Conn, 2)
		dial := func(context.Context, string, string) (net.Conn, error) {
			c, peer := net.Pipe()
			peers <- peer
			return c, nil
		}
		m := conn.New("tcp", "collector.test:5000",
			conn.WithDialer(dial), conn.WithWriteTimeout(5*time.Second))
		defer m.Close()

		// The collector accepts and never reads: the Write fails once the
		// write timeout has passed (up to twice it on a connection without
		// a file descriptor, as here: see WithWriteTimeout).
		stuck := <-peers
		defer stuck.Close()
		start := time.Now()
		_, err := m.Write([]byte("never read\n"))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write: %v, want a timeout", err)
		}
		if took := time.Since(start); took < 5*time.Second*7/8 || took > 10*time.Second {
			t.Fatalf("Write failed after %v of fake time, want 5 s to 10 s", took)
		}

		// The connection never carried a Write, so the Manager redials on
		// the backoff schedule: 1 s ±50%. Two seconds of fake time later
		// there is a new connection, and it works.
		time.Sleep(2 * time.Second)
		var peer net.Conn
		select {
		case peer = <-peers:
		default:
			t.Fatal("no redial within 2 s of fake time")
		}
		defer peer.Close()
		got := make(chan string)
		go func() {
			line, _ := bufio.NewReader(peer).ReadString('\n')
			got <- line
		}()
		if _, err := m.Write([]byte("hello\n")); err != nil {
			t.Fatalf("Write on the new connection: %v", err)
		}
		if line := <-got; line != "hello\n" {
			t.Fatalf("the peer read %q", line)
		}
	})
}

// A primary and a standby: the primary is down, so the Manager connects to
// the standby at once, and moves back to the primary when a probe finds it
// up again. Lines go to whichever is up; the switch loses none.
func ExampleWithEndpoints() {
	standby, _ := net.Listen("tcp", "127.0.0.1:0")
	defer standby.Close()
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	primary := down.Addr().String()
	down.Close() // nothing listens: dials are refused

	m := conn.New("tcp", primary, conn.WithEndpoints(standby.Addr().String()),
		conn.WithProbeInterval(100*time.Millisecond))
	defer m.Close()
	fmt.Fprintln(m, "first line")
	fmt.Println("writing to the standby:", m.Stats().Endpoint == standby.Addr().String())

	up, err := net.Listen("tcp", primary) // the primary is back
	if err != nil {
		fmt.Println(err)
		return
	}
	defer up.Close()
	c, _ := up.Accept() // a fail-back probe
	defer c.Close()
	for m.Stats().Switches == 0 {
		time.Sleep(time.Millisecond)
	}
	fmt.Fprintln(m, "second line")
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Printf("the primary received %q; switch: %v\n", line, m.Stats().Switches)
	// Output:
	// writing to the standby: true
	// the primary received "second line\n"; switch: 1
}

// Rotation: every connection is replaced after about a minute (±10%), so
// that clients pinned by a load balancer or an old DNS answer spread
// again; Spread gives each client of a fleet its own order over the
// endpoints that discovery returns.
func ExampleWithMaxConnectionAge() {
	discover := func(ctx context.Context) ([]string, error) {
		// A name, a file or an API: asked before each dial.
		return []string{"collector-1.internal:514", "collector-2.internal:514"}, nil
	}
	m := conn.New("tcp", "", conn.WithDiscovery(discover), conn.WithPolicy(conn.Spread),
		conn.WithMaxConnectionAge(time.Minute))
	defer m.Close()
	w := conn.NewBatchWriter(m)
	defer w.Close()
	fmt.Fprintln(w, "a log line")
}

// A durable spool keeps what the collector could not take, across a
// restart of the program: the next BatchWriter on the directory sends it
// first.
func ExampleWithDurableSpool() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // the collector is down

	m := conn.New("tcp", addr)
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 1<<30), conn.WithDurableSpool(conn.DefaultSpoolSync),
		conn.WithCloseTimeout(10*time.Millisecond))
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range 3 {
		fmt.Fprintf(w, "line %d\n", i)
	}
	if err := w.Sync(context.Background()); err != nil { // on disk: a crash loses none of them
		fmt.Println(err)
	}
	w.Close()
	m.Close()
	fmt.Println("left on disk:", w.Stats().Left)

	// The program starts again, and the collector is back.
	ln, _ = net.Listen("tcp", addr)
	defer ln.Close()
	received := make(chan []string)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var lines []string
		for r := bufio.NewScanner(c); len(lines) < 4 && r.Scan(); {
			lines = append(lines, r.Text())
		}
		received <- lines
	}()
	m = conn.New("tcp", addr)
	defer m.Close()
	w, err = conn.OpenBatchWriter(m, conn.WithSpool(dir, 1<<30), conn.WithDurableSpool(conn.DefaultSpoolSync))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Fprintln(w, "new line")
	if err := w.Close(); err != nil {
		fmt.Println(err)
	}
	for _, line := range <-received {
		fmt.Println(line)
	}
	fmt.Println("recovered:", w.Stats().Spool.Recovered)
	// Output:
	// left on disk: 3
	// line 0
	// line 1
	// line 2
	// new line
	// recovered: 3
}
