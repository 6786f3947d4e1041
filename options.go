package conn

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/go-kit/log"
)

// Defaults of the options.
const (
	DefaultDialTimeout  = 10 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultBackoffBase  = time.Second
	DefaultBackoffMax   = time.Minute
)

// connectWait bounds how long the first Take or Write waits for the first
// dial, and how long Write waits for the immediate redial that replaces a
// proven connection. The dial itself goes on.
const connectWait = time.Second

// Dialer imitates net.Dial. Dialer is assumed to yield connections that are
// safe for use by multiple concurrent goroutines.
type Dialer func(network, address string) (net.Conn, error)

// DialContextFunc dials with a context, like (*net.Dialer).DialContext and
// (*tls.Dialer).DialContext. The Manager cancels the context when the dial
// timeout passes or the Manager is closed.
type DialContextFunc func(ctx context.Context, network, address string) (net.Conn, error)

// AfterFunc imitates time.After.
type AfterFunc func(time.Duration) <-chan time.Time

// An Option configures a Manager made by New.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is what the options set. It is read-only once New returns.
type config struct {
	dial         DialContextFunc
	after        AfterFunc
	logger       log.Logger
	hook         func(Event)
	dialTimeout  time.Duration
	writeTimeout time.Duration
	backoff      backoff
	problems     []string      // invalid option values, logged by New
	bareErrors   bool          // Write returns ErrConnectionUnavailable itself, as go-kit's does
	multi        *multiConfig  // several endpoints (endpoints.go); nil: none of their options
	probe        probeKind     // how the liveness check asks the kernel: the platform's best, unless a test asks for the peek
	maxLinger    time.Duration // how long a switched-out connection waits for its peer's close (maxLinger; tests shorten it)
}

// defaultDial is shared by every Manager: a net.Dialer is safe for
// concurrent use, and one per Manager would cost memory for nothing.
var defaultDial = (&net.Dialer{}).DialContext

func defaultConfig() config {
	return config{
		dial:         defaultDial,
		after:        time.After,
		logger:       log.NewNopLogger(),
		dialTimeout:  DefaultDialTimeout,
		writeTimeout: DefaultWriteTimeout,
		maxLinger:    maxLinger,
		backoff:      backoff{base: DefaultBackoffBase, max: DefaultBackoffMax},
	}
}

// WithDialer sets the function that makes connections, for example
// (&tls.Dialer{Config: cfg}).DialContext or a net.Dialer with keep-alive
// settings of your choice. The context it receives ends when the dial timeout
// passes or the Manager is closed, so a dial to an address that does not
// answer cannot hold up Close. A nil d means (&net.Dialer{}).DialContext.
//
// If the connection it returns has a HandshakeContext method, as a
// *tls.Conn made with tls.Client does, the Manager completes the handshake
// as part of the dial, under the same context, so that no Write ever
// handshakes. A Dialer that panics counts as a failed dial: the panic is
// recovered, logged with its stack, and kept in Stats().LastError.
func WithDialer(d DialContextFunc) Option {
	return optionFunc(func(c *config) {
		if d != nil {
			c.dial = d
		}
	})
}

// bareErrors makes Write return ErrConnectionUnavailable itself, without
// its cause, for the go-kit constructors: their callers may compare with ==.
var bareErrors = optionFunc(func(c *config) { c.bareErrors = true })

// withDialerFunc adapts a Dialer, which takes no context, for NewManager.
func withDialerFunc(d Dialer) Option {
	return optionFunc(func(c *config) {
		if d != nil {
			c.dial = contextless(d)
		}
	})
}

// WithLogger sets the logger that receives one line per state change:
// connected, connection lost (with the error), dial failed (with the attempt
// number and the wait before the next one). Failed Writes are not logged; they
// return their errors. Each line carries go-kit's level.Key() with
// level.InfoValue(), WarnValue() or ErrorValue(), so level.NewFilter works
// on them; a dial failure that retrying will not fix (IsPermanent) is at
// level error. A nil logger discards the lines.
//
// The logger is called one line at a time, in order, from a goroutine that
// the Manager starts when it has lines to deliver: the Manager's own
// goroutine never waits for it. So the logger may write into the Manager
// it logs for (a slog handler over the Manager's connection, say): such a
// Write waits for the Manager's dial as any other Write does, never for
// itself. A Manager changing state faster than its logger keeps up waits
// once 64 lines are queued. Lines logged after Close returns are dropped.
// The logger must not call Close. A logger that panics is not called
// again.
func WithLogger(logger log.Logger) Option {
	return optionFunc(func(c *config) {
		if logger == nil {
			logger = log.NewNopLogger()
		}
		c.logger = logger
	})
}

// WithSlogLogger is WithLogger for a *slog.Logger: the state changes are
// logged at Info (connected) and Warn (lost, dial failed), and recovered
// panics of user code at Error, with their details as attributes. It
// replaces any logger set before it. A nil logger discards the lines.
func WithSlogLogger(logger *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if logger == nil {
			c.logger = log.NewNopLogger()
			return
		}
		c.logger = slogAdapter{logger}
	})
}

// WithAfterFunc sets the function through which the Manager waits between
// dial attempts; time.After by default. Tests may pass a function that
// returns a channel they control. A nil after means time.After. It is called
// from the Manager's goroutine; if it panics, the panic is logged and
// time.After is used from then on.
func WithAfterFunc(after AfterFunc) Option {
	return optionFunc(func(c *config) {
		if after == nil {
			after = time.After
		}
		c.after = after
	})
}

// WithDialTimeout bounds each dial, TLS handshake included
// (DefaultDialTimeout by default). Zero means no bound other than Close; a
// negative d is invalid and keeps the default.
func WithDialTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.problems = append(c.problems, "negative dial timeout "+d.String()+" ignored")
			return
		}
		c.dialTimeout = d
	})
}

// WithWriteTimeout bounds each Write (DefaultWriteTimeout by default): a
// Write that cannot hand its bytes to the connection within d of starting
// to write fails with a timeout error and the connection is replaced. The
// bound holds whatever other Writes do: one deadline on the connection
// serves every Write, and it is moved later only when no earlier Write can
// still be waiting on it (see RELIABILITY.md). To keep the hot path cheap
// it is moved lazily, so a stalled Write fails between 7/8 d and d after it
// started; sooner if it was queued behind an earlier stalled Write, which
// it then fails with, or if it started while the peer had left earlier
// bytes untaken and no Write had completed for d/8. On a connection the
// kernel cannot be asked about (no file descriptor, or not Linux) the bound
// of a stalled Write is 2d: the deadline is moved once without knowing
// whether an earlier Write is blocked. Zero disables the
// timeout; a negative d is invalid and keeps the default; a d too large to
// add to the clock means no bound in practice.
//
// The deadline stays set on the connection between Writes. Code that Takes
// the connection and writes to it directly should set its own deadline first,
// as any user of a net.Conn should.
func WithWriteTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.problems = append(c.problems, "negative write timeout "+d.String()+" ignored")
			return
		}
		c.writeTimeout = d
	})
}

// WithBackoff sets the reconnect schedule: after n consecutive failed
// attempts the Manager waits base·2ⁿ⁻¹, never more than max, each wait spread
// by ±50% so that many clients do not redial in step; at the cap the waits
// spread over [max/2, max]. The defaults are DefaultBackoffBase and
// DefaultBackoffMax. The count resets when a connection proves itself by
// carrying a successful Write. Non-positive values, or max < base, are
// invalid and keep the defaults.
func WithBackoff(base, max time.Duration) Option {
	return optionFunc(func(c *config) {
		if base <= 0 || max < base {
			c.problems = append(c.problems, "invalid backoff (base "+base.String()+", max "+max.String()+") ignored")
			return
		}
		c.backoff = backoff{base: base, max: max}
	})
}

// WithStateHook sets a function called on every change of the Manager's
// state (see Event), for example to feed your own metrics. It is called one
// call at a time and in order, right after the logger's line for the same
// change, from the goroutine that delivers log lines (see WithLogger): a
// slow hook delays later lines and calls, not the Manager's redials. It
// must not call Close. Calls stop when Close returns. A hook that panics
// is logged, with the stack, and not called again.
func WithStateHook(hook func(Event)) Option {
	return optionFunc(func(c *config) {
		c.hook = hook
	})
}
