package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/seed44b27a20/conn"
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
	spool        string        // keep every line in this directory until it is delivered; "": no spool
	spoolSize    sizeFlag      // with spool: the most its files hold
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

Spool: with -spool DIR every line also goes to disk, in DIR (made if
missing), and stays there until it is delivered (relp://: acknowledged).
While there is no connection, send reads its whole input into the spool,
up to -spool-size, instead of waiting for room. A send that is killed, or
whose machine crashes, leaves what it had read in DIR, and the next send
with the same -spool DIR sends it, in order, before any new input (a line
delivered in the last 250ms before the crash may come again). Each line is
handed to the operating system within a millisecond of being read and synced
to disk within 250ms: a kill loses at most the last millisecond's lines, a
power loss at most the last 250ms. When the spool is full, -full applies: reading waits for room,
or -full drop drops the line. One send at a time may use a DIR: another
fails at once, with status 1. A record found damaged on disk (cut short by
a crash, or changed) is skipped and named on stderr, with its file and byte
range: its lines are lost, and the exit status is 1. What the close timeout
leaves undelivered stays in DIR for the next send (status 1). The status
line and the summary show the bytes the spool holds and the age of its
oldest record.

Examples:
  tail -F app.log | connpipe send tcp://logs.internal:5000
  tail -F app.log | connpipe send tcp://primary:514 tcp://standby:514
  connpipe send -file events.log -ca ca.pem tls://collector:6514
  journalctl -f -o json | connpipe send -full drop -buffer 64M unix:///run/collector.sock
  tail -F app.log | connpipe send -spool /var/spool/connpipe relp://collector:2514

Exit status: 0 every line was written to a connection (relp://: every line
was acknowledged by the server; with -spool, so was every line recovered
from the spool, and none is left in it); 1 some lines were dropped or not
delivered (relp://: refused, or not acknowledged within -close-timeout; with
-spool: left in the spool for the next send, or lost in a damaged record;
the summary on stderr says how many), an error that retrying cannot fix, a
file that cannot be read, or a -spool DIR that cannot be used (another send
uses it, say); 2 bad usage; 130 (SIGINT) or 143 (SIGTERM) interrupted, after
the summary.
`)
	c.buffer = conn.DefaultBufferSize
	c.spoolSize = defaultSpoolSize
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
	fs.StringVar(&c.spool, "spool", "", "keep every line on disk in `DIR` until it is delivered: an outage fills the disk, not the wait, and the next send with this DIR sends what a killed one left")
	fs.Var(&c.spoolSize, "spool-size", "with -spool: the spool's files hold at most this many `bytes` (k, M, G suffixes: powers of 1024); when full, -full applies")
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
	case set["spool"] && cfg.spool == "":
		return nil, usagef("-spool needs a directory: -spool DIR")
	case set["spool-size"] && cfg.spool == "":
		return nil, usagef("-spool-size applies only with -spool DIR")
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

// run sends the input, in four phases, each in a file of its own:
// setup (send_setup.go) makes the Manager, the BatchWriter and its spool,
// and starts the status line; read (send_read.go) pumps the input into the
// BatchWriter until it ends, an interrupt or an error that retrying cannot
// fix; finish (send_flush.go) gives what is queued -close-timeout to go
// out; summarize (send_summary.go) prints the summary and returns the exit
// status.
func (j *sendJob) run(ctx context.Context, e *env) int {
	r, err := j.setup(e)
	if err != nil {
		return fail(e, err)
	}
	defer r.m.Close()
	end, readErr := r.read(ctx)
	out := r.finish(ctx, end)
	return r.summarize(out, readErr)
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
