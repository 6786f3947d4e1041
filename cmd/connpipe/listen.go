package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxListenLine is the longest line listen holds back until its newline
// arrives; the start of a longer line is printed as it is, and may then
// be interleaved with other clients' lines.
const maxListenLine = 1 << 20

type listenConfig struct {
	count bool
}

func listenFlags(c *listenConfig) *flagSet {
	fs := newFlagSet("listen", "connpipe listen [flags] ADDRESS", `Listens on ADDRESS and prints to stdout what clients send, like nc -lk: on
tcp:// and unix:// it accepts any number of clients and prints whole lines
only, so lines from different clients never mix (a client's unterminated last
line is printed with a newline); on udp:// it prints each datagram. With
-count it prints, once a second, the lines and bytes received that second and
the totals instead. It says on stderr where it listens ("listening on
tcp://127.0.0.1:40123"), so port 0 picks a free port. SIGINT or SIGTERM stops
it: it closes its sockets and exits 0.

ADDRESS: tcp://host:port, udp://host:port, unix:///path or host:port (TCP);
an empty host means every interface. A unix socket file left behind by a
server that is gone is replaced.

Examples:
  connpipe listen tcp://127.0.0.1:5000
  connpipe listen -count unix:///tmp/connpipe.sock
`)
	fs.BoolVar(&c.count, "count", false, "print lines and bytes per second instead of the data")
	return fs
}

func runListen(ctx context.Context, e *env, args []string) int {
	var cfg listenConfig
	fs := listenFlags(&cfg)
	address, code, done := parseCommand(fs, e, args)
	if done {
		return code
	}
	ep, err := parseAddress(address)
	if err != nil {
		return fail(e, &usageError{err.Error()})
	}
	if ep.TLS() {
		return fail(e, usagef("listen does not serve TLS: use tcp://, udp:// or unix://"))
	}
	l := &listener{out: e.stdout, count: cfg.count, udp: ep.Network == "udp", con: newConsole(e.stderr, false)}
	if ep.Network == "udp" {
		err = l.serveUDP(ctx, ep)
	} else {
		err = l.serveStream(ctx, ep)
	}
	if err != nil {
		return fail(e, err)
	}
	from := ""
	if !l.udp {
		from = " from " + plural(l.clients.Load(), "client")
	}
	l.con.Printf("%s: stopped: received %s (%s)%s", programName, plural(l.lines.Load(), "line"), bytesize(l.bytes.Load()), from)
	return exitOK
}

// A listener prints or counts what it receives.
type listener struct {
	out   io.Writer
	outMu sync.Mutex // one write to out at a time: lines never interleave
	count bool
	udp   bool // no connections to count
	con   *console

	lines, bytes, clients atomic.Uint64
	open                  atomic.Int64 // connections open now
}

// deliver prints (or counts) data, which holds whole lines, or a final
// fragment ending in a newline that was added.
func (l *listener) deliver(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	l.lines.Add(uint64(bytes.Count(data, []byte{'\n'})))
	l.bytes.Add(uint64(len(data)))
	if l.count {
		return nil
	}
	l.outMu.Lock()
	defer l.outMu.Unlock()
	_, err := l.out.Write(data)
	return err
}

// counter prints a line per second with -count, until ctx is done.
func (l *listener) counter(ctx context.Context, wg *sync.WaitGroup) {
	if !l.count {
		return
	}
	wg.Go(func() {
		start := time.Now()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last meter
		last.rate(start, 0, 0)
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				lines, bytes := l.lines.Load(), l.bytes.Load()
				dl, db := lines-last.lines, bytes-last.bytes
				last.rate(now, lines, bytes)
				open := ""
				if !l.udp {
					open = "  |  " + plural(l.open.Load(), "connection") + " open"
				}
				l.outMu.Lock()
				fmt.Fprintf(l.out, "%6s  %s  %s  |  total %s  %s%s\n",
					elapsed(now.Sub(start).Round(time.Second)), plural(dl, "line"), bytesize(db),
					plural(lines, "line"), bytesize(bytes), open)
				l.outMu.Unlock()
			}
		}
	})
}

func (l *listener) serveStream(ctx context.Context, ep endpoint) error {
	if ep.Network == "unix" {
		if err := removeStaleSocket(ep.Address); err != nil {
			return err
		}
	}
	ln, err := net.Listen(ep.Network, ep.Address)
	if err != nil {
		return err
	}
	l.con.Printf("%s: listening on %s (Ctrl-C to stop)", programName, endpoint{Scheme: ep.Scheme, Address: ln.Addr().String()})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		done  bool // no more connections: the sockets are being closed
	)
	l.counter(ctx, &wg)
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		done = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	var acceptErr error
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR) {
				time.Sleep(10 * time.Millisecond) // out of descriptors, say: no notification exists
				continue
			}
			acceptErr = err
			break
		}
		mu.Lock()
		if done {
			mu.Unlock()
			c.Close()
			break
		}
		conns[c] = struct{}{}
		mu.Unlock()
		l.clients.Add(1)
		l.open.Add(1)
		wg.Go(func() {
			l.serveConn(c)
			l.open.Add(-1)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		})
	}
	cancel()
	wg.Wait()
	return acceptErr
}

// serveConn prints the lines received on c, whole lines at a time.
func (l *listener) serveConn(c net.Conn) {
	buf := make([]byte, 0, 64<<10)
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxListenLine {
				if l.deliver(buf) != nil {
					return
				}
				buf = buf[:0]
			} else {
				buf = append(buf, 0)[:len(buf)] // grow
			}
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			fresh := buf[len(buf) : len(buf)+n]
			buf = buf[:len(buf)+n]
			if i := bytes.LastIndexByte(fresh, '\n'); i >= 0 {
				end := len(buf) - n + i + 1
				if l.deliver(buf[:end]) != nil {
					return
				}
				buf = buf[:copy(buf, buf[end:])]
			}
		}
		if err != nil {
			if len(buf) > 0 {
				l.deliver(append(buf, '\n'))
			}
			return
		}
	}
}

func (l *listener) serveUDP(ctx context.Context, ep endpoint) error {
	pc, err := net.ListenPacket("udp", ep.Address)
	if err != nil {
		return err
	}
	l.con.Printf("%s: listening on %s (Ctrl-C to stop)", programName, endpoint{Scheme: "udp", Address: pc.LocalAddr().String()})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	l.counter(ctx, &wg)
	wg.Go(func() {
		<-ctx.Done()
		pc.Close()
	})
	buf := make([]byte, 64<<10+1)
	var readErr error
	for {
		n, _, err := pc.ReadFrom(buf[:len(buf)-1])
		if n > 0 {
			d := buf[:n]
			if d[n-1] != '\n' {
				d = append(d, '\n') // datagrams never run together
			}
			if err := l.deliver(d); err != nil {
				readErr = err
				break
			}
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EINTR) {
				continue // an ICMP error about something we did not send; ignore
			}
			readErr = err
			break
		}
	}
	cancel()
	wg.Wait()
	return readErr
}

// removeStaleSocket removes the unix socket at path if nothing listens on
// it any more, so that listening there again works.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil // absent, or not a socket: net.Listen will say what is wrong
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another server is listening there", path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return os.Remove(path)
	}
	return nil
}
