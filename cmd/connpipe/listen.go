package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxListenLine is the longest line listen holds back until its newline
// arrives; the start of a longer line is printed as it is, and the output
// is kept for it until its end.
const maxListenLine = 1 << 20

type listenConfig struct {
	count   bool
	cert    string
	key     string
	ca      string
	certOut string
}

func listenFlags(c *listenConfig) *flagSet {
	fs := newFlagSet("listen", "connpipe listen [flags] ADDRESS", `Listens on ADDRESS and prints to stdout what clients send, like nc -lk: on
tcp://, tls:// and unix:// it accepts any number of clients and prints whole
lines only, so lines from different clients never mix (a client's unterminated
last line is printed with a newline when the client closes the connection; a
line cut short, because the connection was reset or listen was stopped, is not
printed, and stderr shows its start). On udp:// it prints each datagram. With
-count it prints, once a second, the lines and bytes received that second and
the totals instead. It says on stderr where it listens ("listening on
tcp://127.0.0.1:40123"), so port 0 picks a free port.

tls:// serves the certificate of -cert and -key; without them, a self-signed
certificate made at start for localhost, 127.0.0.1, ::1 and the host of
ADDRESS, whose key never leaves the process. Its SHA-256 fingerprint is
printed, and the certificate is written (for send -ca) to -cert-out, or to a
temporary file removed at exit, whose name is printed. With -ca, clients
must present a certificate signed by one of its CAs. To try TLS locally, in
two terminals:
  connpipe listen -cert-out cp.pem tls://127.0.0.1:6514
  connpipe send -ca cp.pem tls://127.0.0.1:6514

SIGINT (Ctrl-C) or SIGTERM stops it: it closes its sockets, prints what it
received on stderr and ends by the signal (a shell shows status 130 or 143).

ADDRESS: tcp://host:port, tls://host:port, udp://host:port, unix:///path
(unix://./path if relative) or host:port (TCP); an empty host, as in :5000,
means every interface. A unix socket file left behind by a server that is
gone is replaced.

Examples:
  connpipe listen tcp://127.0.0.1:5000
  connpipe listen -count unix:///tmp/connpipe.sock
  connpipe listen -cert server.pem -key server.key -ca clients.pem tls://:6514

Exit status: 1 on an error (the address is in use, a file cannot be read);
2 bad usage; 130 (SIGINT) or 143 (SIGTERM) when stopped.
`)
	fs.BoolVar(&c.count, "count", false, "print lines and bytes per second instead of the data")
	fs.StringVar(&c.cert, "cert", "", "tls: serve the certificate (chain) in this PEM `FILE` (with -key); without it, a self-signed one")
	fs.StringVar(&c.key, "key", "", "tls: the private key of -cert, a PEM `FILE`")
	fs.StringVar(&c.ca, "ca", "", "tls: require client certificates signed by a CA in this PEM `FILE`")
	fs.StringVar(&c.certOut, "cert-out", "", "tls without -cert: write the self-signed certificate to this `FILE`, for send -ca")
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
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var tlsFlags []string
	for _, name := range []string{"cert", "key", "ca", "cert-out"} {
		if set[name] {
			tlsFlags = append(tlsFlags, "-"+name)
		}
	}
	switch {
	case ep.Acks():
		return fail(e, usagef("listen does not speak RELP: to try send relp:// locally, listen with rsyslog's imrelp (%q is relp://)", address))
	case !ep.TLS() && len(tlsFlags) > 0:
		return fail(e, usagef("%s only to tls:// addresses, not %q", applies(tlsFlags), address))
	case (cfg.cert == "") != (cfg.key == ""):
		return fail(e, usagef("-cert and -key go together: the server's certificate and its private key"))
	case cfg.cert != "" && cfg.certOut != "":
		return fail(e, usagef("-cert-out writes the self-signed certificate made without -cert; with -cert, give its file to send -ca"))
	}
	l := &listener{out: e.stdout, count: cfg.count, udp: ep.Network == "udp", con: newConsole(e.stderr, false)}
	var ss *selfSigned
	if ep.TLS() {
		if l.tls, ss, err = serverTLS(&cfg, ep.Host); err != nil {
			return fail(e, err)
		}
		defer ss.remove()
	}
	if ep.Network == "udp" {
		err = l.serveUDP(ctx, ep)
	} else {
		err = l.serveStream(ctx, ep, ss)
	}
	if err != nil {
		return fail(e, err)
	}
	from := ""
	if !l.udp {
		from = " from " + plural(l.clients.Load(), "client")
	}
	cut := ""
	if n := l.cut.Load(); n > 0 {
		cut = fmt.Sprintf("; %s cut short", plural(n, "line"))
	}
	l.con.Printf("%s: stopped (%s): received %s (%s)%s%s", programName, e.signalName(), plural(l.lines.Load(), "line"), bytesize(l.bytes.Load()), from, cut)
	return e.interrupted()
}

// A listener prints or counts what it receives.
type listener struct {
	out   io.Writer
	outMu sync.Mutex // one write to out at a time: lines never interleave
	count bool
	udp   bool        // no connections to count
	tls   *tls.Config // serve TLS; nil for none
	con   *console

	stopping              atomic.Bool // the sockets are being closed
	lines, bytes, clients atomic.Uint64
	cut                   atomic.Uint64 // lines cut short
	open                  atomic.Int64  // connections open now
}

// deliver prints (or counts) data, which holds whole lines, or a final
// fragment ending in a newline that was added.
func (l *listener) deliver(data []byte) error {
	if len(data) == 0 || l.count {
		l.tally(data)
		return nil
	}
	l.outMu.Lock()
	defer l.outMu.Unlock()
	return l.write(data)
}

// write prints data; outMu must be held.
func (l *listener) write(data []byte) error {
	l.tally(data)
	_, err := l.out.Write(data)
	return err
}

func (l *listener) tally(data []byte) {
	l.lines.Add(uint64(bytes.Count(data, []byte{'\n'})))
	l.bytes.Add(uint64(len(data)))
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

func (l *listener) serveStream(ctx context.Context, ep endpoint, ss *selfSigned) error {
	if ep.Network == "unix" {
		if err := removeStaleSocket(ep.Address); err != nil {
			return err
		}
	}
	ln, err := net.Listen(ep.Network, ep.Address)
	if err != nil {
		return err
	}
	at := endpoint{Scheme: ep.Scheme, Address: ln.Addr().String()}
	l.con.Printf("%s: listening on %s (Ctrl-C to stop)", programName, at)
	if ss != nil {
		l.con.Printf("%s: no -cert: serving a certificate made for this run, valid for %s, SHA-256 fingerprint %s",
			programName, strings.Join(ss.names, ", "), ss.fingerprint)
		l.con.Printf("%s: to trust it: %s send -ca %s %s", programName, programName, ss.path, dialable(at))
	}

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
		l.stopping.Store(true)
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

// dialable is at as a client would dial it: an unspecified host (every
// interface) becomes 127.0.0.1.
func dialable(at endpoint) string {
	host, port, err := net.SplitHostPort(at.Address)
	if err != nil {
		return at.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return at.Scheme + "://" + net.JoinHostPort(host, port)
}

// serveConn prints the lines received on c, whole lines at a time. A line
// longer than maxListenLine is printed as it arrives, and keeps the output
// to itself until its end, so that no other line lands inside it.
func (l *listener) serveConn(raw net.Conn) {
	c := raw
	if l.tls != nil {
		tc := tls.Server(raw, l.tls)
		if err := tc.Handshake(); err != nil {
			if !l.stopping.Load() {
				l.con.Printf("%s: TLS handshake with %s failed: %v", programName, raw.RemoteAddr(), err)
			}
			return
		}
		c = tc
	}
	var (
		buf     = make([]byte, 0, 64<<10)
		printed int  // bytes of the current line printed already: it is long
		holding bool // outMu is held for the rest of a long line
	)
	defer func() {
		if holding {
			l.outMu.Unlock()
		}
	}()
	// emit prints data, which ends a line if ends; a long line holds the
	// output meanwhile.
	emit := func(data []byte, ends bool) error {
		if l.count {
			l.tally(data)
			return nil
		}
		if !holding && (printed > 0 || !ends) {
			l.outMu.Lock()
			holding = true
		}
		if !holding {
			return l.deliver(data)
		}
		err := l.write(data)
		if ends {
			l.outMu.Unlock()
			holding = false
		}
		return err
	}
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxListenLine {
				if emit(buf, false) != nil {
					return
				}
				printed += len(buf)
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
				if emit(buf[:end], true) != nil {
					return
				}
				printed = 0
				buf = buf[:copy(buf, buf[end:])]
			}
		}
		if err == nil {
			continue
		}
		if len(buf) == 0 && printed == 0 {
			return
		}
		if errors.Is(err, io.EOF) {
			// The client ended its last line by closing: it is whole.
			emit(append(buf, '\n'), true)
			return
		}
		// Cut short: by a reset, or by the stop. What was not printed is
		// not; the start of a long line already printed is ended.
		l.cut.Add(1)
		why := "listen was stopped"
		if !l.stopping.Load() {
			why = fmt.Sprintf("the connection failed (%v)", err)
		}
		if printed > 0 {
			emit(append(buf, '\n'), true)
			l.con.Printf("%s: a line from %s was cut short when %s: its first %s had been printed, and a newline ends it there",
				programName, raw.RemoteAddr(), why, bytesize(printed+len(buf)))
			return
		}
		l.con.Printf("%s: a line from %s was cut short when %s; not printed: %s", programName, raw.RemoteAddr(), why, quoteStart(buf, 60))
		return
	}
}

// quoteStart quotes the first n bytes of b, saying how long b is if that
// is not all.
func quoteStart(b []byte, n int) string {
	if len(b) <= n {
		return strconv.Quote(string(b))
	}
	return fmt.Sprintf("%q… (%s in all)", b[:n], bytesize(len(b)))
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
