package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
)

// Defaults of send's flags that differ from the library's.
const (
	defaultCloseTimeout = 10 * time.Second
	// maxDatagramLine is the largest UDP payload over IPv4: a longer line
	// can never be sent as one datagram.
	maxDatagramLine = 65507
	// readBufferSize is the size of the input buffer; longer lines are
	// assembled in a separate buffer.
	readBufferSize = 64 << 10
	// forever is how long reading waits for room without -wait: the
	// BatchWriter takes a huge wait to mean no limit.
	forever = time.Duration(math.MaxInt64)
)

type sendConfig struct {
	file         string
	dialTimeout  time.Duration
	writeTimeout time.Duration
	backoffBase  time.Duration
	backoffMax   time.Duration
	buffer       sizeFlag
	full         string
	wait         time.Duration
	closeTimeout time.Duration
	ca           string
	cert         string
	key          string
	serverName   string
	insecure     bool
	verbose      bool
	policy       string        // with several ADDRESSes: "priority" or "spread"
	probe        time.Duration // -policy priority: how often to probe the earlier ADDRESSes
	stagger      time.Duration // with several ADDRESSes: how long a dial hangs before the next starts
	maxAge       time.Duration // replace each connection after this long; 0: never
	window       int           // relp://: lines sent and not yet acknowledged, at most
}

func sendFlags(c *sendConfig) *flagSet {
	fs := newFlagSet("send", "connpipe send [flags] ADDRESS [ADDRESS...]", `Reads lines from stdin (or -file) and sends each one, with its newline, as one
message to ADDRESS through a conn.BatchWriter: lines queue in memory (-buffer)
and go out whole and in order whenever there is a connection, which is
redialed with backoff for as long as it takes.

Several ADDRESSes, all of one scheme, are endpoints for the same lines, the
first being the primary. -policy priority (the default) sends to the first
that accepts: when its connection is lost the next one is dialed at once, and
while on a later one send dials the earlier ones every -probe and moves back,
losing nothing. -policy spread gives each sender its own order, so that many
senders share the endpoints evenly, and moves only when its endpoint fails (or
at -max-age). A dial that hangs for -stagger does not hold up the next.

When the queue is full, reading waits for room, as with nc or socat: the
input goes at the pace the connection takes it, and no line is dropped (-full
wait, the default; it waits as long as it takes). A producer that must never
wait can have the lines that find the queue full dropped and counted instead
(-full drop); -wait D drops a line only after it has waited D for room.

While there is no connection, the status line (on a terminal) and -v show
why and when the next attempt is. A name that does not resolve ("no such
host") is retried like any failure: it may be registered later. Errors that
retrying cannot fix end send at once with status 1: a server certificate
that does not verify, a server that does not speak TLS or refuses the
handshake (it wants a client certificate, say), a malformed address. With
several ADDRESSes, only when every one of them fails so.

At the end of the input, what is queued gets -close-timeout to go out. The
first Ctrl-C (SIGINT or SIGTERM) stops reading and does the same, with a
countdown; a second one stops at once. A summary is printed either way.

TLS: tls://host:port verifies the server's certificate against the system's
CAs, or those of -ca, for the host of each ADDRESS or -servername; -cert and
-key present a client certificate. -insecure-skip-verify turns verification
off, and says so on stderr. To try TLS locally, in two terminals:
  connpipe listen -cert-out cp.pem tls://127.0.0.1:6514
  connpipe send -ca cp.pem tls://127.0.0.1:6514

ADDRESS: tcp://host:port, udp://host:port, unix:///path (unix://./path if
relative), tls://host:port, relp://host:port or host:port (TCP). Over UDP,
lines are packed into datagrams of up to 1432 bytes.

RELP: relp://host:port speaks RELP over TCP to rsyslog's imrelp (or any RELP
server), which acknowledges each line once it has taken it. A line stays
queued until it is acknowledged; lines sent on a connection that is lost
before their acknowledgement are sent again on the next one, so a restart of
the collector loses nothing and may duplicate at most -window lines. A line
the server refuses (an answer other than 200) is not sent again: it counts
as not delivered. The summary counts the lines acknowledged, sent again
(replayed) and refused. One trailing newline of each line is not sent.

Examples:
  tail -F app.log | connpipe send tcp://logs.internal:5000
  tail -F app.log | connpipe send tcp://primary:514 tcp://standby:514
  connpipe send -file events.log -ca ca.pem tls://collector:6514
  journalctl -f -o json | connpipe send -full drop -buffer 64M unix:///run/collector.sock

Exit status: 0 every line was written to a connection (relp://: every line
was acknowledged by the server); 1 some lines were dropped or not delivered
(relp://: refused, or not acknowledged within -close-timeout; the summary on
stderr says how many), an error that retrying cannot fix, or a file that
cannot be read; 2 bad usage; 130 (SIGINT) or 143 (SIGTERM) interrupted, after
the summary.
`)
	c.buffer = conn.DefaultBufferSize
	fs.StringVar(&c.file, "file", "", "read lines from `PATH` instead of stdin (- is stdin)")
	fs.DurationVar(&c.dialTimeout, "dial-timeout", conn.DefaultDialTimeout, "give up on one connection attempt after this long (0: no limit)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", conn.DefaultWriteTimeout, "replace a connection on which a write makes no progress for this long (0: never)")
	fs.DurationVar(&c.backoffBase, "backoff-base", conn.DefaultBackoffBase, "wait before the second connection attempt; doubles with each failure")
	fs.DurationVar(&c.backoffMax, "backoff-max", conn.DefaultBackoffMax, "longest wait between connection attempts")
	fs.Var(&c.buffer, "buffer", "queue at most this many `bytes` in memory (k, M, G suffixes: powers of 1024)")
	fs.StringVar(&c.full, "full", "wait", "when the queue is full, `wait|drop`: reading waits for room, or the line is dropped and counted")
	fs.DurationVar(&c.wait, "wait", 0, "with -full wait: drop a line that has waited this long for room (0: wait as long as it takes)")
	fs.DurationVar(&c.closeTimeout, "close-timeout", defaultCloseTimeout, "at the end of the input or the first interrupt, keep trying to deliver what is queued for this long")
	fs.StringVar(&c.ca, "ca", "", "tls: trust the CA certificates in this PEM `FILE` instead of the system's")
	fs.StringVar(&c.cert, "cert", "", "tls: present the client certificate in this PEM `FILE` (with -key)")
	fs.StringVar(&c.key, "key", "", "tls: the private key of -cert, a PEM `FILE`")
	fs.StringVar(&c.serverName, "servername", "", "tls: verify the server's certificate for `NAME` (and send it as SNI) instead of the host of each ADDRESS")
	fs.BoolVar(&c.insecure, "insecure-skip-verify", false, "tls: do not verify the server's certificate (testing only; a warning says so)")
	fs.BoolVar(&c.verbose, "v", false, "print each connection state change on stderr, and when reading waits for room")
	fs.StringVar(&c.policy, "policy", "priority", "with several ADDRESSes, `priority|spread`: the first that accepts, moving back to earlier ones; or one of them, spread over many senders")
	fs.DurationVar(&c.probe, "probe", conn.DefaultProbeInterval, "-policy priority: while on a later ADDRESS, dial the earlier ones this often (±10%) to move back")
	fs.DurationVar(&c.stagger, "stagger", conn.DefaultDialStagger, "with several ADDRESSes: dial the next one when a dial has hung this long (0: one at a time, each for up to -dial-timeout)")
	fs.IntVar(&c.window, "window", conn.DefaultWindow, "relp: send at most `N` lines ahead of the server's acknowledgements; also the most a lost connection can duplicate")
	fs.DurationVar(&c.maxAge, "max-age", 0, "replace each connection, gracefully, once it has lived this long (±10%; 0: never); over udp://, look the name up again")
	return fs
}

// waitForRoom is how long a line waits for room in the queue with -full
// wait: -wait, or, by default, as long as it takes (the BatchWriter takes
// a huge wait to mean no limit; it never overflows).
func (c *sendConfig) waitForRoom() time.Duration {
	if c.wait == 0 {
		return forever
	}
	return c.wait
}

// sendJob is a validated send command line.
type sendJob struct {
	cfg     sendConfig
	ep      endpoint    // the first ADDRESS, the primary
	eps     targets     // every ADDRESS, ep first
	tls     *tls.Config // nil unless ep is tls://
	input   io.Reader
	closeIn func() error
}

// targets are send's ADDRESSes, the primary first, all of one scheme.
type targets []endpoint

// several reports whether there is more than one ADDRESS.
func (t targets) several() bool { return len(t) > 1 }

// name returns the ADDRESS, in canonical form, of the endpoint that the
// Manager calls address (Event.Endpoint, Stats.Endpoint); with one
// ADDRESS, always that one.
func (t targets) name(address string) string {
	for _, ep := range t {
		if ep.Address == address || len(t) == 1 {
			return ep.String()
		}
	}
	return address
}

// String lists the ADDRESSes: "tcp://a:514, tcp://b:514".
func (t targets) String() string {
	names := make([]string, len(t))
	for i, ep := range t {
		names[i] = ep.String()
	}
	return strings.Join(names, ", ")
}

// addresses returns what the Manager dials for each ADDRESS.
func (t targets) addresses() []string {
	out := make([]string, len(t))
	for i, ep := range t {
		out[i] = ep.Address
	}
	return out
}

// parseTargets parses send's ADDRESSes. Each must be one to send to (a
// port; for tls://, a host unless -servername names the server), all of
// one scheme (a bare host:port is tcp://), none twice.
func parseTargets(addresses []string, serverName string) (targets, error) {
	var eps targets
	for i, address := range addresses {
		ep, err := parseAddress(address)
		if err != nil {
			return nil, &usageError{err.Error()}
		}
		switch {
		case ep.Port == 0 && ep.Scheme != "unix":
			return nil, usagef("port 0 in %q: give the port to send to", address)
		case ep.TLS() && ep.Host == "" && serverName == "":
			return nil, usagef("missing host in %q: tls:// needs the server's name to verify its certificate (or give it with -servername)", address)
		case i > 0 && ep.Scheme != eps[0].Scheme:
			return nil, usagef("mixed schemes: %s is %s://, but the first ADDRESS, %s, is %s://: every ADDRESS of one send must use the same scheme", quoteScheme(address), ep.Scheme, quoteScheme(addresses[0]), eps[0].Scheme)
		}
		for j, prev := range eps {
			if prev == ep {
				return nil, usagef("unexpected argument %q: it repeats ADDRESS %q", address, addresses[j])
			}
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// quoteScheme quotes an ADDRESS, saying that a bare host:port is TCP.
func quoteScheme(address string) string {
	if !strings.Contains(address, "://") {
		return fmt.Sprintf("%q (host:port, so tcp://)", address)
	}
	return fmt.Sprintf("%q", address)
}

// prepareSend validates the command line, then opens what it names. A
// mistake on the command line is a usage error; a file that cannot be
// read is not (exit status 1). Either way nothing has been sent.
func prepareSend(e *env, fs *flagSet, cfg *sendConfig, addresses []string) (*sendJob, error) {
	eps, err := parseTargets(addresses, cfg.serverName)
	if err != nil {
		return nil, err
	}
	ep, address := eps[0], addresses[0]
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var tlsFlags, multiFlags []string
	for _, name := range []string{"ca", "cert", "key", "servername", "insecure-skip-verify"} {
		if set[name] {
			tlsFlags = append(tlsFlags, "-"+name)
		}
	}
	for _, name := range []string{"policy", "probe", "stagger"} {
		if set[name] {
			multiFlags = append(multiFlags, "-"+name)
		}
	}
	switch {
	case !ep.TLS() && len(tlsFlags) > 0:
		return nil, usagef("%s only to tls:// addresses, not %q", applies(tlsFlags), address)
	case set["window"] && !ep.Acks():
		return nil, usagef("-window applies only to relp:// addresses, not %q: other schemes have no acknowledgements to wait for", address)
	case cfg.window < 1:
		return nil, usagef("-window must be at least 1, not %d", cfg.window)
	case !eps.several() && len(multiFlags) > 0:
		return nil, usagef("%s only with several ADDRESSes, the first being the primary: connpipe send [flags] ADDRESS ADDRESS...", applies(multiFlags))
	case cfg.policy != "priority" && cfg.policy != "spread":
		return nil, usagef("invalid value %q for -policy: use -policy priority (the default) or -policy spread", cfg.policy)
	case set["probe"] && cfg.policy != "priority":
		return nil, usagef("-probe says how often -policy priority dials the earlier ADDRESSes to move back to them; -policy %s does not move back", cfg.policy)
	case cfg.probe <= 0:
		return nil, usagef("-probe must be positive, not %v", cfg.probe)
	case cfg.stagger < 0:
		return nil, usagef("-stagger must not be negative (0 means one dial at a time), not %v", cfg.stagger)
	case cfg.maxAge < 0:
		return nil, usagef("-max-age must not be negative (0 means no maximum), not %v", cfg.maxAge)
	case (cfg.cert == "") != (cfg.key == ""):
		return nil, usagef("-cert and -key go together: the client certificate and its private key")
	case cfg.insecure && cfg.ca != "":
		return nil, usagef("-ca and -insecure-skip-verify contradict each other: -ca verifies against FILE, -insecure-skip-verify does not verify")
	case cfg.full != "drop" && cfg.full != "wait":
		return nil, usagef("invalid value %q for -full: use -full wait (the default) or -full drop", cfg.full)
	case set["wait"] && cfg.full != "wait":
		return nil, usagef("-wait limits how long -full wait waits; with -full drop lines never wait")
	case cfg.wait < 0:
		return nil, usagef("-wait must not be negative (0 means as long as it takes), not %v", cfg.wait)
	case cfg.closeTimeout <= 0:
		return nil, usagef("-close-timeout must be positive, not %v", cfg.closeTimeout)
	case cfg.dialTimeout < 0 || cfg.writeTimeout < 0:
		return nil, usagef("-dial-timeout and -write-timeout must not be negative (0 means no limit)")
	case cfg.backoffBase <= 0 || cfg.backoffMax < cfg.backoffBase:
		return nil, usagef("want 0 < -backoff-base (%v) <= -backoff-max (%v)", cfg.backoffBase, cfg.backoffMax)
	}
	job := &sendJob{cfg: *cfg, ep: ep, eps: eps, input: e.stdin, closeIn: func() error { return nil }}
	if ep.TLS() {
		if job.tls, err = clientTLS(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.file != "" && cfg.file != "-" {
		f, err := os.Open(cfg.file)
		if err != nil {
			return nil, fmt.Errorf("cannot read -file: %v", err)
		}
		job.input, job.closeIn = f, f.Close
	}
	return job, nil
}

// applies says that flags apply: "-ca applies", "-ca and -key apply".
func applies(flags []string) string {
	if len(flags) == 1 {
		return flags[0] + " applies"
	}
	return strings.Join(flags, " and ") + " apply"
}

func runSend(ctx context.Context, e *env, args []string) int {
	var cfg sendConfig
	fs := sendFlags(&cfg)
	addresses, code, done := parseAddresses(fs, e, args)
	if done {
		return code
	}
	job, err := prepareSend(e, fs, &cfg, addresses)
	if err != nil {
		return fail(e, err)
	}
	defer job.closeIn()
	return job.run(ctx, e)
}

// A sender pumps lines into a BatchWriter and keeps count.
type sender struct {
	w       *conn.BatchWriter
	maxLine int  // longer lines are dropped: they can never be sent
	several bool // several ADDRESSes: only a failed round over all of them is fatal
	acks    bool // relp://: delivered means acknowledged
	verbose bool

	refusal atomic.Pointer[error] // the server's latest refusal of a line (relp://)

	stopping atomic.Bool // the input is no longer read: no new Writes
	inWrite  atomic.Bool // a Write is under way, which may wait for room
	mu       sync.Mutex  // serialises Writes with the end of the run
	stopped  bool        // no more counting: the summary is being made

	// Counted once Write has ruled on a line.
	lines, bytes atomic.Uint64 // lines read from the input, and their bytes
	full         atomic.Uint64 // dropped by Write: the buffer was full (-full drop, -wait)
	tooLarge     atomic.Uint64 // dropped by Write: larger than the buffer
	tooLong      atomic.Uint64 // dropped here, not offered to Write: longer than maxLine
	cut          atomic.Uint64 // read, and refused by Write as the input was stopped

	// Maintained by the state hook.
	connects   atomic.Uint64
	reconnects atomic.Uint64
	last       atomic.Pointer[seenEvent] // the latest state change
	events     chan conn.Event           // for -v; never blocks the hook
	fatal      chan struct{}             // closed at an error that retrying cannot fix
	fatalOnce  sync.Once
	fatalErr   error // set before fatal is closed
}

// A seenEvent is a state change and when the hook saw it, a moment after
// the Manager made it.
type seenEvent struct {
	conn.Event
	at time.Time
}

// next returns when the Manager dials again after ev, a Disconnected event.
func (ev *seenEvent) next() time.Time { return ev.at.Add(ev.Wait) }

func newSender(maxLine int, verbose bool) *sender {
	s := &sender{maxLine: maxLine, fatal: make(chan struct{}), verbose: verbose}
	if verbose {
		s.events = make(chan conn.Event, 64)
	}
	return s
}

var errStopped = errors.New("stopped")

// dropReport hears the BatchWriter's drops (relp://): a line the server
// refused is kept for the summary, and printed with -v.
func (s *sender) dropReport(con *console, r conn.DropReport) {
	if !errors.Is(r.Err, conn.ErrAckRefused) {
		return // the summary counts the other drops
	}
	err := r.Err
	s.refusal.Store(&err)
	if s.verbose {
		con.Printf("%s: the server refused a line, which is not sent again: %v", programName, err)
	}
}

func (s *sender) hook(ev conn.Event) {
	s.last.Store(&seenEvent{Event: ev, at: time.Now()})
	// A switch (a fail-back, a rotation) replaced a working connection:
	// the summary counts it apart, from the Manager's Stats.
	if ev.State == conn.Connected && ev.Switch == conn.NoSwitch && s.connects.Add(1) > 1 {
		s.reconnects.Add(1)
	}
	// With several ADDRESSes the Manager dials them all before it waits:
	// a round that failed is an *EndpointsError, permanent only if each
	// endpoint's failure is. The loss of one endpoint's connection
	// (ev.Endpoint set) leaves the others to try.
	if ev.State == conn.Disconnected && conn.IsPermanent(ev.Err) && (!s.several || ev.Endpoint == "") {
		s.fatalOnce.Do(func() {
			s.fatalErr = ev.Err
			close(s.fatal)
		})
		return // said once, by the command
	}
	if s.events != nil {
		select {
		case s.events <- ev:
		default: // the printer is behind: skip the line, never block
		}
	}
}

// send offers one line to the BatchWriter and counts it. It waits for room
// as configured (-full, -wait); the end of the run releases it.
func (s *sender) send(line []byte) error {
	if s.stopping.Load() {
		return errStopped // read after the input was stopped: not counted
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopped
	}
	if len(line) > s.maxLine {
		s.tooLong.Add(1)
		s.count(len(line))
		return nil
	}
	s.inWrite.Store(true)
	_, err := s.w.Write(line)
	s.inWrite.Store(false)
	switch {
	case err == nil:
	case errors.Is(err, conn.ErrBufferFull):
		s.full.Add(1)
	case errors.Is(err, conn.ErrTooLarge):
		s.tooLarge.Add(1)
	default: // ErrClosed: the run is ending: the line waited for room, or came just then
		s.cut.Add(1)
		s.count(len(line))
		return errStopped
	}
	s.count(len(line))
	return nil
}

// skip counts a line of n bytes that was too long to be read whole.
func (s *sender) skip(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopped
	}
	s.tooLong.Add(1)
	s.count(n)
	return nil
}

func (s *sender) count(n int) {
	s.lines.Add(1)
	s.bytes.Add(uint64(n))
}

// pump reads lines from r until EOF and sends each one. A final line without
// a newline gets one. Lines of any length work: those longer than the input
// buffer are assembled, up to maxLine, in a buffer of their own; the rest of
// a longer one is skipped and it is counted as too long. Only lines longer
// than the input buffer are copied here; the BatchWriter copies each line
// into its queue.
func (s *sender) pump(r io.Reader) error {
	br := bufio.NewReaderSize(r, readBufferSize)
	var (
		long    []byte // the start of a line longer than br's buffer
		skipped = -1   // bytes of a line too long to keep; -1: none
	)
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			switch {
			case skipped >= 0:
				skipped += len(chunk)
			case len(long)+len(chunk) >= s.maxLine: // its newline will not fit either
				skipped, long = len(long)+len(chunk), long[:0]
			default:
				long = append(long, chunk...)
			}
			continue
		}
		var serr error
		switch {
		case skipped >= 0:
			serr = s.skip(skipped + len(chunk))
			skipped = -1
		case len(chunk) > 0 || len(long) > 0:
			line := chunk
			if len(long) > 0 || err != nil {
				long = append(long, chunk...)
				line = long
			}
			if line[len(line)-1] != '\n' {
				line = append(line, '\n') // a final line without its newline
			}
			serr = s.send(line)
			if cap(long) > 4*readBufferSize {
				long = nil // do not keep a huge buffer for one long line
			} else {
				long = long[:0]
			}
		}
		if serr != nil {
			return serr
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// How the reading of the input ended.
type ending int

const (
	endOfInput  ending = iota // EOF, or a read error
	interrupted               // the first SIGINT or SIGTERM
	gaveUp                    // an error that retrying cannot fix
)

// A flushState describes the last phase of a run, for the status line:
// what is queued gets until deadline to go out.
type flushState struct {
	end      ending
	deadline time.Time
}

func (j *sendJob) run(ctx context.Context, e *env) int {
	start := time.Now()
	cfg := j.cfg
	s := newSender(max(int(cfg.buffer)-conn.MessageOverhead, 0), cfg.verbose) // what the BatchWriter can hold
	s.several = j.eps.several()
	if j.ep.Network == "udp" {
		s.maxLine = min(s.maxLine, maxDatagramLine)
	}
	opts := []conn.Option{
		conn.WithDialTimeout(cfg.dialTimeout),
		conn.WithWriteTimeout(cfg.writeTimeout),
		conn.WithBackoff(cfg.backoffBase, cfg.backoffMax),
		conn.WithStateHook(s.hook),
	}
	if j.tls != nil {
		opts = append(opts, conn.WithDialer((&tlsDialer{config: j.tls}).DialContext))
	}
	if j.eps.several() {
		policy := conn.Priority
		if cfg.policy == "spread" {
			policy = conn.Spread
		}
		opts = append(opts,
			conn.WithEndpoints(j.eps.addresses()[1:]...),
			conn.WithPolicy(policy),
			conn.WithProbeInterval(cfg.probe),
			conn.WithDialStagger(cfg.stagger))
	}
	if cfg.maxAge > 0 {
		opts = append(opts, conn.WithMaxConnectionAge(cfg.maxAge))
	}
	// A status line redrawn under the lines someone types would garble them.
	con := newConsole(e.stderr, e.tty && !(e.typing && j.input == e.stdin))
	if cfg.insecure {
		con.Printf("%s: warning: -insecure-skip-verify: the server's certificate is not verified; anyone on the way can read and change what is sent", programName)
	}
	if cfg.verbose {
		switch {
		case !j.eps.several():
			con.Printf("%s: connecting to %s", programName, j.ep)
		case cfg.policy == "spread":
			con.Printf("%s: connecting to one of %s (-policy spread)", programName, j.eps)
		default:
			con.Printf("%s: connecting to the first of %s that accepts (-policy priority)", programName, j.eps)
		}
	}
	m := conn.New(j.ep.Network, j.ep.Address, opts...)
	defer m.Close()
	bopts := []conn.BatchOption{conn.WithBufferSize(int(cfg.buffer)), conn.WithCloseTimeout(cfg.closeTimeout)}
	if cfg.full == "wait" {
		bopts = append(bopts, conn.WithWaitWhenFull(cfg.waitForRoom()))
	}
	if j.ep.Acks() {
		s.acks = true
		bopts = append(bopts, conn.WithAcks(relp.New()), conn.WithWindow(cfg.window, 0),
			conn.WithDropHook(func(r conn.DropReport) { s.dropReport(con, r) }))
	}
	s.w = conn.NewBatchWriter(m, bopts...)

	var flush atomic.Pointer[flushState] // nil while reading
	stopStatus := make(chan struct{})
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		s.status(con, m, j.eps, cfg, &flush, stopStatus)
	}()

	pumped := make(chan error, 1)
	go func() { pumped <- s.pump(j.input) }()
	var (
		readErr error
		end     ending
	)
	select {
	case readErr = <-pumped:
		end = endOfInput
	case <-ctx.Done():
		end = interrupted
	case <-s.fatal:
		end = gaveUp
	}
	if end == endOfInput && (e.settled(ctx) || e.tty && !e.typing && doneWithin(ctx, pipelineGrace)) {
		// Ctrl-C in a pipeline ends the producer too: its end of input
		// and the signal race. The signal is what the user did. On a
		// terminal, with the input from a pipe, it is given a moment to
		// arrive: with the cores busy it was seen to come after the end
		// of input (RELIABILITY.md, "Flakiness under load").
		end = interrupted
	}

	// The flush: what is queued gets -close-timeout, unless there is no
	// point (gave up) or a further interrupt says to stop now.
	s.stopping.Store(true)
	queued := s.w.Stats().Queue.Messages
	flush.Store(&flushState{end: end, deadline: time.Now().Add(cfg.closeTimeout)})
	if end == interrupted && queued > 0 && !con.tty {
		con.Printf("%s: interrupted (%s): stopped reading; sending the %s queued for up to %v (interrupt again to stop at once)",
			programName, e.signalName(), plural(queued, "line"), cfg.closeTimeout)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.w.Close() }() // waiting Writes give up at once
	stopNow := e.aborted()                // the second interrupt
	if end != interrupted {
		stopNow = ctx.Done() // the first, during the final flush
	}
	fatal := s.fatal
	var (
		closeErr  error
		stoppedBy string // why what was queued was dropped before the close timeout
		cutShort  bool   // an interrupt cut the flush short
		wasIntr   = end == interrupted
	)
	if end == gaveUp {
		s.sayFatal(con, j.eps)
		m.Close() // nothing more can be delivered: drop what is queued now
		stoppedBy = "connpipe gave up"
		fatal, stopNow = nil, nil
	}
	select {
	case closeErr = <-closed:
	case <-stopNow:
		wasIntr = true
		select {
		case closeErr = <-closed: // done already: nothing was cut short
		default:
			cutShort = true
			stoppedBy = "stopped by a second interrupt"
			if end != interrupted {
				stoppedBy = "stopped by an interrupt"
			}
			m.Close()
			closeErr = <-closed
		}
	case <-fatal:
		s.sayFatal(con, j.eps)
		end = gaveUp
		stoppedBy = "connpipe gave up"
		m.Close()
		closeErr = <-closed
	}
	if e.settled(ctx) {
		wasIntr = true // an interrupt came as the flush ended by itself
	}
	s.mu.Lock()
	s.stopped = true // the pump, if still reading, counts nothing more
	s.mu.Unlock()
	st := s.w.Stats()
	ms := m.Stats()
	m.Close()
	close(stopStatus)
	<-statusDone
	con.ClearStatus()

	read, written := s.lines.Load(), st.Written
	full, tooLong, cut := s.full.Load(), s.tooLong.Load()+s.tooLarge.Load(), s.cut.Load()
	if s.acks {
		written = st.Acked // delivered means acknowledged
	}
	dropped := read - written
	switched := ""
	if ms.Switches > 0 {
		switched = ", " + switches(ms.Switches)
	}
	if s.acks {
		con.Printf("%s: %s read (%s), %s acknowledged, %s replayed, %s refused, %s dropped, %s%s, %s",
			programName, plural(read, "line"), bytesize(s.bytes.Load()), count(written), count(st.Replayed), count(st.Refused),
			count(dropped-st.Refused), plural(s.reconnects.Load(), "reconnect"), switched, elapsed(time.Since(start)))
	} else {
		con.Printf("%s: %s read (%s), %s written, %s dropped, %s%s, %s",
			programName, plural(read, "line"), bytesize(s.bytes.Load()), count(written), count(dropped),
			plural(s.reconnects.Load(), "reconnect"), switched, elapsed(time.Since(start)))
	}

	code := exitOK
	if wasIntr {
		what := "stopped reading the input"
		switch {
		case end == interrupted:
		case cutShort:
			what = "stopped the final flush"
		default:
			what = "as the run was ending"
		}
		con.Printf("%s: interrupted (%s): %s", programName, e.signalName(), what)
	}
	if readErr != nil && !errors.Is(readErr, errStopped) {
		con.Printf("%s: reading the input: %v", programName, readErr)
		code = exitFailed
	}
	if end == gaveUp {
		code = exitFailed
	}
	if dropped > 0 {
		var why []string
		if full > 0 {
			what := fmt.Sprintf("%s dropped because the %s buffer was full", count(full), bytesize(int(cfg.buffer)))
			if cfg.full == "wait" {
				what += fmt.Sprintf(" for %v (-wait)", cfg.wait)
			}
			why = append(why, what)
		}
		if tooLong > 0 {
			why = append(why, fmt.Sprintf("%s longer than %s", count(tooLong), bytesize(s.maxLine)))
		}
		if cut > 0 {
			why = append(why, fmt.Sprintf("%s read but not yet queued when the input was stopped", count(cut)))
		}
		refused := uint64(0)
		if s.acks && st.Refused > 0 {
			refused = st.Refused
			what := fmt.Sprintf("%s refused by the server", count(refused))
			if err := s.refusal.Load(); err != nil {
				what += fmt.Sprintf(" (the last: %v)", *err)
			}
			why = append(why, what)
		}
		still := "still queued"
		if s.acks {
			still = "not acknowledged"
		}
		left := dropped - full - tooLong - cut - refused
		if left > 0 {
			if stoppedBy != "" {
				why = append(why, fmt.Sprintf("%s %s when %s", count(left), still, stoppedBy))
			} else {
				why = append(why, fmt.Sprintf("%s %s when the %v close timeout ran out", count(left), still, cfg.closeTimeout))
			}
		}
		undelivered := "not delivered"
		if s.acks {
			undelivered = "not acknowledged"
		}
		msg := fmt.Sprintf("%s: %s of %s %s: %s", programName, count(dropped), plural(read, "line"), undelivered, strings.Join(why, ", "))
		// With acks, the BatchWriter's own close of the session is the
		// last error after a refusal: only lines left unacknowledged have
		// a connection's error to explain them.
		if ms.LastError != nil && end != gaveUp && (closeErr != nil || ms.State != conn.Connected) && (!s.acks || left > 0) {
			msg += fmt.Sprintf("; last error: %v", ms.LastError)
		}
		con.Printf("%s", msg)
		code = exitFailed
	}
	if wasIntr {
		return e.interrupted()
	}
	return code
}

// switches says how many switches: "1 switch", "2 switches".
func switches(n uint64) string {
	if n == 1 {
		return "1 switch"
	}
	return count(n) + " switches"
}

// sayFatal reports the error that retrying cannot fix, and that connpipe
// gives up. With several ADDRESSes that is an error for each.
func (s *sender) sayFatal(con *console, eps targets) {
	<-s.fatal
	con.ClearStatus()
	if eps.several() {
		con.Printf("%s: cannot connect to any of %s: %v", programName, eps, s.fatalErr)
	} else {
		con.Printf("%s: cannot connect to %s: %v", programName, eps[0], s.fatalErr)
	}
	msg := "retrying cannot fix this: giving up"
	if hint := tlsHint(s.fatalErr); hint != "" {
		msg += "; " + hint
	}
	con.Printf("%s: %s", programName, msg)
}

// pipelineGrace is how long send, on a terminal, waits at the end of piped
// input for a Ctrl-C that may have ended the producer: an interactive
// pipeline's end is that much later, a script's (no terminal) is not.
const pipelineGrace = 100 * time.Millisecond

// doneWithin reports whether ctx is done, or becomes done within d.
func doneWithin(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return true
	case <-t.C:
		return false
	}
}

// status draws the status line 4 times a second, on a terminal, and prints
// state changes for -v, until stop is closed. It notices when reading has
// waited for room for a while: a Write under way and no line counted for a
// whole interval.
func (s *sender) status(con *console, m *conn.Manager, eps targets, cfg sendConfig, flush *atomic.Pointer[flushState], stop <-chan struct{}) {
	var (
		t         = time.NewTicker(statusInterval)
		meter     meter
		lastLines = s.lines.Load()
		waiting   int       // intervals in a row that reading waited for room
		since     time.Time // when it began to wait, about
		dnsSaid   bool      // the hint about names that do not resolve was given
	)
	defer t.Stop()
	say := func(ev conn.Event) {
		if ev.State == conn.Closed {
			return // the end of the run, not news
		}
		line := describeEvent(ev, eps)
		if notFound(ev.Err) && !dnsSaid {
			dnsSaid = true
			line += "; the name does not resolve: connpipe keeps trying, in case it is registered later"
		}
		con.Printf("%s: %s", programName, line)
	}
	for {
		select {
		case <-stop:
			// A run shorter than a scheduling delay ends with its events
			// (its one "connected to") still queued: say them first.
			for {
				select {
				case ev := <-s.events:
					say(ev)
				default:
					return
				}
			}
		case ev := <-s.events:
			say(ev)
		case now := <-t.C:
			lines := s.lines.Load()
			switch {
			case flush.Load() != nil:
				waiting = 0 // reading has stopped
			case s.inWrite.Load() && lines == lastLines:
				if waiting == 0 {
					since = now.Add(-statusInterval)
				}
				waiting++
			default:
				if waiting >= 2 && cfg.verbose {
					con.Printf("%s: reading resumed after waiting %s for room", programName, elapsed(now.Sub(since)))
				}
				waiting = 0
			}
			lastLines = lines
			if waiting == 2 && cfg.verbose {
				con.Printf("%s: the %s queue is full: reading waits for room; nothing is dropped", programName, bytesize(int(cfg.buffer)))
			}
			if !con.tty {
				continue
			}
			st := s.w.Stats()
			done, doneBytes := st.Written, st.WrittenBytes
			if s.acks {
				done, doneBytes = st.Acked, st.AckedBytes
			}
			lps, bps := meter.rate(now, done, doneBytes)
			ms := m.Stats()
			v := statusView{
				now:        now,
				ep:         eps[0],
				eps:        eps,
				endpoint:   ms.Endpoint,
				switches:   ms.Switches,
				state:      ms.State,
				lastErr:    ms.LastError,
				event:      s.last.Load(),
				flush:      flush.Load(),
				written:    done,
				bytes:      doneBytes,
				acks:       s.acks,
				replayed:   st.Replayed,
				refused:    st.Refused,
				lps:        lps,
				bps:        bps,
				reconnects: s.reconnects.Load(),
				dropped:    st.Dropped + s.tooLong.Load(),
				queued:     st.Queue.Messages,
				waiting:    waiting > 0,
			}
			con.Status(v.String())
		}
	}
}

// A statusView is what the status line shows.
type statusView struct {
	now        time.Time
	ep         endpoint // the ADDRESS, or the first of several
	eps        targets  // several ADDRESSes; with one, ep alone counts
	endpoint   string   // with several, the one in use (Stats.Endpoint)
	switches   uint64   // connections replaced by a switch (Stats.Switches)
	state      conn.State
	lastErr    error      // the Manager's last error
	event      *seenEvent // the latest state change; nil if none yet
	flush      *flushState
	written    uint64 // acknowledged, with acks
	bytes      uint64
	acks       bool // relp://: written counts acknowledged lines
	replayed   uint64
	refused    uint64
	lps, bps   float64
	reconnects uint64
	dropped    uint64
	queued     int
	waiting    bool // reading waits for room
}

// String returns the status line: the last phase, if under way; the
// connection, with the error and the time to the next dial while there is
// none; whether reading waits; then the counters.
func (v statusView) String() string {
	var parts []string
	if f := v.flush; f != nil {
		left := countdown(f.deadline.Sub(v.now))
		switch f.end {
		case interrupted:
			parts = append(parts, "interrupted", fmt.Sprintf("flushing %s queued, giving up in %s", plural(v.queued, "line"), left), "Ctrl-C again to stop now")
		case endOfInput:
			parts = append(parts, "end of input", fmt.Sprintf("flushing %s queued, giving up in %s", plural(v.queued, "line"), left), "Ctrl-C to stop now")
		}
	}
	switch v.state {
	case conn.Connecting:
		if v.eps.several() {
			parts = append(parts, "connecting to "+v.eps.String())
		} else {
			parts = append(parts, "connecting to "+v.ep.String())
		}
	case conn.Connected:
		if v.eps.several() && v.endpoint != "" {
			parts = append(parts, "connected to "+v.eps.name(v.endpoint))
		} else {
			parts = append(parts, "connected")
		}
	case conn.Disconnected:
		err := v.lastErr
		ev := v.event
		if ev != nil && ev.State != conn.Disconnected {
			ev = nil // the hook has not seen this change yet
		}
		if ev != nil {
			err = ev.Err
		}
		what := "disconnected"
		if ev != nil && ev.Endpoint != "" && v.eps.several() {
			what += " from " + v.eps.name(ev.Endpoint)
		}
		if err != nil {
			what += ": " + shortError(err)
		}
		parts = append(parts, what)
		if ev != nil {
			next := "dialing"
			if wait := ev.next().Sub(v.now); wait > 0 {
				next = "next dial in " + countdown(wait)
			}
			if ev.Attempt > 0 {
				next += fmt.Sprintf(" (attempt %d)", ev.Attempt+1)
			}
			parts = append(parts, next)
		}
	default:
		parts = append(parts, v.state.String())
	}
	if v.waiting {
		parts = append(parts, "queue full: reading waits")
	}
	done := "lines"
	if v.acks {
		done = "acked"
	}
	parts = append(parts,
		fmt.Sprintf("%s %s %s", count(v.written), done, bytesize(v.bytes)),
		fmt.Sprintf("%s/s %s/s", rateString(v.lps), bytesize(v.bps)),
		plural(v.reconnects, "reconnect"))
	if v.replayed > 0 {
		parts = append(parts, count(v.replayed)+" replayed")
	}
	if v.refused > 0 {
		parts = append(parts, count(v.refused)+" refused")
	}
	if v.switches > 0 {
		parts = append(parts, switches(v.switches))
	}
	parts = append(parts, count(v.dropped)+" dropped")
	if v.queued > 0 && v.flush == nil {
		parts = append(parts, count(v.queued)+" queued")
	}
	return strings.Join(parts, " · ")
}

// countdown formats a time left: "2.4s" under 10 s, else whole seconds
// rounded up ("12s", "1m5s"); never negative.
func countdown(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", math.Ceil(d.Seconds()*10)/10)
	}
	return (d + time.Second - 1).Truncate(time.Second).String()
}

// shortError is err without the "dial tcp 10.0.0.1:5000: " that every
// dial error starts with: the status line has little room. A failed round
// over several endpoints is each endpoint with its short error.
func shortError(err error) string {
	if ee, ok := err.(*conn.EndpointsError); ok {
		parts := make([]string, 0, len(ee.Errs))
		for i, e := range ee.Errs {
			if e != nil && i < len(ee.Endpoints) {
				parts = append(parts, ee.Endpoints[i]+": "+shortError(e))
			}
		}
		return strings.Join(parts, "; ")
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// notFound reports whether err says that a name does not resolve.
func notFound(err error) bool {
	var dns *net.DNSError
	return errors.As(err, &dns) && dns.IsNotFound
}

// describeEvent says what a state change means, for -v. With several
// ADDRESSes it names the one connected to, switched to (and why) or lost;
// a failed round over them all names each in its error.
func describeEvent(ev conn.Event, eps targets) string {
	switch ev.State {
	case conn.Connected:
		if ev.Switch != conn.NoSwitch {
			return fmt.Sprintf("switched to %s (%s)", eps.name(ev.Endpoint), ev.Switch)
		}
		return "connected to " + eps.name(ev.Endpoint)
	case conn.Disconnected:
		retry := "redialing at once"
		if ev.Wait > 0 {
			retry = "next dial in " + elapsed(ev.Wait)
		}
		if ev.Attempt > 0 {
			retry += fmt.Sprintf(" (attempt %d)", ev.Attempt+1)
		}
		if eps.several() && ev.Endpoint != "" {
			return fmt.Sprintf("disconnected from %s: %v; %s", eps.name(ev.Endpoint), ev.Err, retry)
		}
		return fmt.Sprintf("disconnected: %v; %s", ev.Err, retry)
	}
	return ev.State.String()
}
