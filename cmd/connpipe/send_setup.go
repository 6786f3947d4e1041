package main

// The first phase of a send: from a validated command line, the Manager,
// the BatchWriter (with its spool, given -spool), the console, and the
// status line's goroutine.

import (
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
)

// A sendRun is one run of send: what setup made, shared by the phases
// after it (read, finish, summarize).
type sendRun struct {
	job   *sendJob
	cfg   sendConfig
	e     *env
	start time.Time
	s     *sender
	m     *conn.Manager
	con   *console
	spool *spoolWatch // with -spool: names the damaged records; nil without

	flush      atomic.Pointer[flushState] // nil while reading
	stopStatus chan struct{}              // closed to stop the status line
	statusDone chan struct{}              // closed once it has stopped
}

// setup makes what a run needs and starts the status line. It fails only
// when the spool cannot be opened: its directory is in use by another
// send, cannot be made or written, or was written by a newer format. With
// -spool the Manager dials only once the spool is open, so that a send
// that fails so has connected to nothing.
func (j *sendJob) setup(e *env) (*sendRun, error) {
	cfg := j.cfg
	r := &sendRun{job: j, cfg: cfg, e: e, start: time.Now()}
	r.s = newSender(j.maxLine(), cfg.verbose)
	r.s.several = j.eps.several()
	r.s.acks = j.ep.Acks()
	// A status line redrawn under the lines someone types would garble them.
	r.con = newConsole(e.stderr, e.tty && !(e.typing && j.input == e.stdin))
	if cfg.insecure {
		r.con.Printf("%s: warning: -insecure-skip-verify: the server's certificate is not verified; anyone on the way can read and change what is sent", programName)
	}
	if cfg.verbose {
		switch {
		case !j.eps.several():
			r.con.Printf("%s: connecting to %s", programName, j.ep)
		case cfg.policy == "spread":
			r.con.Printf("%s: connecting to one of %s (-policy spread)", programName, j.eps)
		default:
			r.con.Printf("%s: connecting to the first of %s that accepts (-policy priority)", programName, j.eps)
		}
	}
	opts := j.managerOptions(r.s)
	var spoolOpen chan struct{} // closed once the spool is open: the Manager may dial
	if cfg.spool != "" {
		r.spool = newSpoolWatch(r.con)
		spoolOpen = make(chan struct{})
		opts = append(opts, conn.WithDialer(dialAfter(spoolOpen, j.dialer())), conn.WithLogger(r.spool))
	}
	r.m = conn.New(j.ep.Network, j.ep.Address, opts...)
	w, err := conn.OpenBatchWriter(r.m, r.batchOptions()...)
	if err != nil {
		r.m.Close()
		if cfg.spool != "" {
			return nil, fmt.Errorf("cannot use -spool %s: %v", cfg.spool, err)
		}
		return nil, err
	}
	r.s.w = w
	if spoolOpen != nil {
		close(spoolOpen)
		r.spool.opened(r.con, cfg, w.Stats().Spool)
	}
	r.stopStatus, r.statusDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.statusDone)
		r.s.status(r.con, r.m, j.eps, cfg, &r.flush, r.stopStatus)
	}()
	return r, nil
}

// maxLine is the longest line send can deliver: what the BatchWriter's
// queue holds; over UDP, one datagram; with -spool, one record of the
// spool.
func (j *sendJob) maxLine() int {
	n := max(int(j.cfg.buffer)-conn.MessageOverhead, 0)
	if j.ep.Network == "udp" {
		n = min(n, maxDatagramLine)
	}
	if j.cfg.spool != "" {
		n = min(n, max(int(j.cfg.spoolSize)-spoolOverhead, 0))
	}
	return n
}

// managerOptions configures the Manager: timeouts, backoff, the state
// hook, TLS, and the policy over several ADDRESSes.
func (j *sendJob) managerOptions(s *sender) []conn.Option {
	cfg := j.cfg
	opts := []conn.Option{
		conn.WithDialTimeout(cfg.dialTimeout),
		conn.WithWriteTimeout(cfg.writeTimeout),
		conn.WithBackoff(cfg.backoffBase, cfg.backoffMax),
		conn.WithStateHook(s.hook),
	}
	if j.tls != nil {
		opts = append(opts, conn.WithDialer(j.dialer()))
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
	return opts
}

// dialer returns how the Manager dials: over TLS for tls://, else as the
// library does by default.
func (j *sendJob) dialer() conn.DialContextFunc {
	if j.tls != nil {
		return (&tlsDialer{config: j.tls}).DialContext
	}
	return (&net.Dialer{}).DialContext
}

// batchOptions configures the BatchWriter: the queue, the close timeout,
// what a full queue does, RELP's acknowledgements, and the spool.
func (r *sendRun) batchOptions() []conn.BatchOption {
	cfg := r.cfg
	bopts := []conn.BatchOption{conn.WithBufferSize(int(cfg.buffer)), conn.WithCloseTimeout(cfg.closeTimeout)}
	if cfg.full == "wait" {
		bopts = append(bopts, conn.WithWaitWhenFull(cfg.waitForRoom()))
	}
	if r.job.ep.Acks() {
		bopts = append(bopts, conn.WithAcks(relp.New()), conn.WithWindow(cfg.window, 0))
	}
	if cfg.spool != "" {
		bopts = append(bopts, spoolOptions(cfg)...)
	}
	if r.s.acks || r.spool != nil {
		bopts = append(bopts, conn.WithDropHook(func(rep conn.DropReport) {
			r.s.dropReport(r.con, rep)
			if r.spool != nil {
				r.spool.dropReport(rep)
			}
		}))
	}
	return bopts
}
