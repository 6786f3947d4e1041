package conn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log/level"
)

// Defaults of the options for several endpoints.
const (
	DefaultProbeInterval = 30 * time.Second
	DefaultDialStagger   = 250 * time.Millisecond
)

// A Policy orders the endpoints of a Manager that has several (see
// WithEndpoints and WithDiscovery).
type Policy int

const (
	// Priority uses the endpoints in the order given: the first that
	// accepts. When the connection is lost the Manager moves down the list
	// at once, without backing off between endpoints; it backs off only
	// after a round over all of them failed. While on a lower endpoint it
	// probes the higher ones every probe interval (WithProbeInterval) and
	// moves back, gracefully, to the first that accepts. This is
	// active-standby failover with fail-back. An endpoint whose connection
	// was lost before it proved itself (it accepts, then drops) is tried
	// last in the next round, so that it does not keep the Manager from a
	// working standby.
	Priority Policy = iota
	// Spread gives each Manager its own order, so that a fleet of clients
	// spreads its connections evenly: the Managers of one process take
	// numbers in turn from a process-wide rotation that starts at a random
	// place, and the number chooses the first endpoint of the (sorted)
	// list; the rest are ordered by a hash of each Manager's own, so that
	// the clients of a failed endpoint scatter over the others. Each dial
	// chooses anew from the current list, so that after endpoints are
	// added or removed, rotation (WithMaxConnectionAge) spreads the
	// Managers exactly again. There is no fail-back: rotation rebalances.
	Spread
)

func (p Policy) String() string {
	switch p {
	case Priority:
		return "priority"
	case Spread:
		return "spread"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// WithEndpoints adds endpoints after New's address, in the order of
// priority: New("tcp", "primary:514", WithEndpoints("standby:514")) fails
// over to the standby and back (see Priority, and WithPolicy for Spread).
// Each endpoint is an address as for net.Dial, host:port or a socket path;
// a host name may resolve to several addresses, which the Dialer tries as
// net.Dialer does. Empty addresses are invalid and ignored, as are repeats.
// With WithDiscovery, these are the endpoints used until discovery first
// answers.
func WithEndpoints(more ...string) Option {
	more = slices.Clone(more)
	return optionFunc(func(c *config) {
		c.several().endpoints = append(c.several().endpoints, more...)
	})
}

// WithDiscovery makes the Manager ask discover for its endpoints before
// each round of dials, a fail-back probe and a rotation included, and at
// each resolution of a datagram connection (WithMaxConnectionAge): from a
// name, a file or an API. The answer replaces New's address and
// WithEndpoints, in the order of priority. discover is called one call at
// a time, in a goroutine of its own, with a context that ends with the
// dial timeout or Close; a panic is recovered as an error. The first round
// waits for the answer (up to the dial timeout); later rounds wait at most
// 250 ms and otherwise dial the endpoints they know, the slower answer
// serving the next round, so that a registry that is down does not hold up
// a failover. Close does not wait for a call that ignores its context. An
// error or an empty answer keeps the previous endpoints (New's address and
// WithEndpoints at first) and is logged at level warn. A nil discover is
// ignored.
func WithDiscovery(discover func(ctx context.Context) ([]string, error)) Option {
	return optionFunc(func(c *config) {
		if discover != nil {
			c.several().discover = discover
		}
	})
}

// WithPolicy sets how a Manager with several endpoints orders them:
// Priority (the default) or Spread. An unknown policy is invalid and keeps
// the default.
func WithPolicy(p Policy) Option {
	return optionFunc(func(c *config) {
		if p != Priority && p != Spread {
			c.problems = append(c.problems, "unknown policy "+p.String()+" ignored")
			return
		}
		c.several().policy = p
	})
}

// WithProbeInterval sets how often a Manager connected to an endpoint
// other than the first (Priority) dials the ones above it, to move back to
// the first that accepts (DefaultProbeInterval by default). Each interval
// is spread by ±10%. On a datagram network a dial proves nothing, so the
// Manager moves back at the first probe, and away again when a Write is
// refused. Non-positive values are invalid and keep the default.
func WithProbeInterval(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.problems = append(c.problems, "non-positive probe interval "+d.String()+" ignored")
			return
		}
		c.several().probeInterval = d
	})
}

// WithDialStagger sets how long a dial of one endpoint may hang before
// the next endpoint is dialed alongside it (DefaultDialStagger by default),
// as Happy Eyeballs (RFC 8305) and gRPC (gRFC A61) do: a primary that
// neither accepts nor refuses does not hold up the standby for the whole
// dial timeout. A dial that fails starts the next at once. The first to
// connect wins; the others are cancelled, and closed if they connect
// anyway. Zero means one endpoint at a time, each for up to the dial
// timeout; a negative d is invalid and keeps the default.
func WithDialStagger(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.problems = append(c.problems, "negative dial stagger "+d.String()+" ignored")
			return
		}
		c.several().stagger = d
	})
}

// WithMaxConnectionAge makes the Manager replace each connection once it
// has lived d, spread by ±10% so that a fleet does not rotate in step, as
// gRPC's MaxConnectionAge does (gRFC A9): long-lived connections that an
// L4 load balancer or a DNS name pinned to one backend spread again, and
// since each dial resolves names anew, rotation follows DNS changes.
//
// Rotation is graceful: the Manager dials the replacement first, moves new
// Writes to it, and closes the old connection only when the Writes under
// way on it, the Manager's and the BatchWriter's, have returned, so it
// loses nothing and tears nothing. A connection handed out by Take is
// closed under its user; Put of the error it then returns is ignored. If
// the replacement cannot be dialed, the old connection stays and the next
// rotation is tried after another d.
//
// On a datagram network (udp, unixgram) there is nothing to rebalance:
// every d the Manager resolves the endpoint's name, and asks discovery,
// off the hot path, and switches only when the address in use is no
// longer in the answer. Write never waits for DNS. Zero, the default,
// means no maximum; a negative d is invalid and ignored.
func WithMaxConnectionAge(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.problems = append(c.problems, "negative maximum connection age "+d.String()+" ignored")
			return
		}
		c.several().maxAge = d
	})
}

// An EndpointsError reports a round of dials over several endpoints in
// which each failed. It unwraps to each failure, so errors.Is matches any
// of them; IsPermanent holds only if it holds for each.
type EndpointsError struct {
	Endpoints []string
	Errs      []error // Errs[i] is why Endpoints[i] failed
}

func (e *EndpointsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "all %d endpoints failed: ", len(e.Endpoints))
	for i, err := range e.Errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Endpoints[i])
		b.WriteString(": ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the failure of each endpoint.
func (e *EndpointsError) Unwrap() []error { return e.Errs }

// spreadNext holds the process-wide rotations from which Managers take
// their numbers, which choose a Spread Manager's first endpoint: one
// rotation per set of endpoints (and discovery function), so that Managers
// for logs and for metrics do not take turns with each other; in turn, so
// that those of one process spread exactly; from a random start, so that
// processes do not all begin with the same endpoint. Independent random
// choices would not do: 64 clients over 4 endpoints would leave one with
// 20% more or less than its share more often than not.
var spreadNext sync.Map // string → *atomic.Uint64

// spreadNumber returns the next number of the rotation for the endpoints
// in list and the discovery function.
func spreadNumber(list []string, discover func(context.Context) ([]string, error)) uint64 {
	key := strings.Join(slices.Sorted(slices.Values(list)), "\x00")
	if discover != nil {
		key += fmt.Sprintf("\x00%x", reflect.ValueOf(discover).Pointer())
	}
	c, ok := spreadNext.Load(key)
	if !ok {
		n := new(atomic.Uint64)
		n.Store(rand.Uint64())
		c, _ = spreadNext.LoadOrStore(key, n)
	}
	return c.(*atomic.Uint64).Add(1)
}

// multiConfig is what the options for several endpoints set. A Manager
// without any of them has none, and no switcher: one endpoint costs
// nothing for the others.
type multiConfig struct {
	endpoints     []string // after New's address
	discover      func(context.Context) ([]string, error)
	policy        Policy
	probeInterval time.Duration
	stagger       time.Duration
	maxAge        time.Duration
}

// several returns c's multiConfig, made with the defaults on first use.
func (c *config) several() *multiConfig {
	if c.multi == nil {
		c.multi = &multiConfig{probeInterval: DefaultProbeInterval, stagger: DefaultDialStagger}
	}
	return c.multi
}

// switches reports whether a Manager so configured may switch
// connections, and so must know when no Write is under way on one: by
// its fence, or by counting (fence.go).
func (c *multiConfig) switches() bool {
	return c != nil && (len(c.endpoints) > 0 || c.discover != nil || c.maxAge > 0)
}

// A switcher is the state of a Manager with several endpoints.
type switcher struct {
	multiConfig
	list   []string // the endpoints in the order of priority, without repeats; the Manager's goroutine's
	seed   uint64   // this Manager's hash for Spread
	pick   uint64   // Spread: this Manager's number in the process-wide rotation
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)

	disc discovery
	// probeBackoff doubles the probe interval for each fail-back in a row
	// whose connection was lost before it proved itself.
	probeBackoff int
	drainers     sync.WaitGroup // goroutines closing switched-out links
	mu           sync.Mutex
	draining     []*link // links switched out, until closed
}

// newSwitcher returns the switcher of a Manager for address and cfg, and
// the problems of the endpoints; nil for a Manager without the options.
func newSwitcher(address string, cfg *multiConfig) (sw *switcher, problems []string) {
	if cfg == nil {
		return nil, nil
	}
	list, empty, repeats := dedupe(append([]string{address}, cfg.endpoints...))
	if len(list) == 0 {
		list = []string{address}
	}
	if address == "" {
		empty--
	}
	if empty > 0 {
		problems = append(problems, "empty endpoint ignored")
	}
	if repeats > 0 {
		problems = append(problems, "repeated endpoint ignored")
	}
	sw = &switcher{multiConfig: *cfg, list: list, seed: rand.Uint64()}
	if cfg.policy == Spread {
		sw.pick = spreadNumber(list, cfg.discover)
	}
	sw.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	return sw, problems
}

// dedupe returns list without empty addresses and repeats, in order, and
// how many of each it dropped.
func dedupe(list []string) (out []string, empty, repeats int) {
	for _, a := range list {
		switch {
		case a == "":
			empty++
		case slices.Contains(out, a):
			repeats++
		default:
			out = append(out, a)
		}
	}
	return out, empty, repeats
}

// discoveryWait bounds how long a round of dials waits for discovery once
// it has answered before: a slower answer serves the next round, so that a
// registry that is down does not hold up the failover to a known standby.
const discoveryWait = 250 * time.Millisecond

// discovery runs the calls of the discovery function, one at a time, each
// in a goroutine of its own that ends when the function returns: a round
// waits for the answer within a bound, and Close does not wait for a
// function that ignores its context.
type discovery struct {
	mu      sync.Mutex
	running context.CancelFunc // ends the call under way; nil if none
	waiting chan discovered    // the round waiting for the call's answer; nil if none
	found   *discovered        // an answer that came after its round stopped waiting
	known   bool               // discovery has answered once: rounds wait at most discoveryWait
}

type discovered struct {
	list []string
	err  error
}

// refresh asks discovery, if any, for the endpoints, keeping the previous
// ones when it fails or answers nothing. It waits for the answer at most
// discoveryWait once discovery has answered before (the dial timeout
// before that), and not at all once abort is closed or the Manager is.
func (m *Manager) refresh(abort <-chan struct{}) {
	if m.sw == nil || m.sw.discover == nil {
		return
	}
	d := &m.sw.disc
	d.mu.Lock()
	if d.found != nil {
		r := *d.found
		d.found = nil
		m.adopt(r)
	}
	if d.running == nil {
		if m.isClosed() {
			d.mu.Unlock()
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		if m.cfg.dialTimeout > 0 {
			ctx, cancel = context.WithTimeout(context.Background(), m.cfg.dialTimeout)
		}
		d.running = cancel
		go m.callDiscovery(ctx, cancel)
	}
	answer := make(chan discovered, 1)
	d.waiting = answer
	var timeout <-chan time.Time
	if d.known {
		t := time.NewTimer(discoveryWait)
		defer t.Stop()
		timeout = t.C
	}
	d.mu.Unlock()
	select {
	case r := <-answer:
		m.adopt(r)
		return
	case <-timeout:
	case <-abort:
	case <-m.closing:
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.waiting == answer {
		d.waiting = nil
	}
	select {
	case r := <-answer: // came as the wait ended
		m.adopt(r)
	default:
	}
}

// callDiscovery is one call of the discovery function; its answer goes to
// the round waiting for it, or to the next.
func (m *Manager) callDiscovery(ctx context.Context, cancel context.CancelFunc) {
	list, err := m.discover(ctx)
	cancel()
	d := &m.sw.disc
	d.mu.Lock()
	defer d.mu.Unlock()
	d.running = nil
	d.known = true
	r := discovered{list, err}
	if d.waiting != nil {
		d.waiting <- r
		d.waiting = nil
		return
	}
	d.found = &r
}

// adopt makes the endpoints discovered current, or logs why not. It runs
// in the Manager's goroutine, which owns the list.
func (m *Manager) adopt(r discovered) {
	list, err := r.list, r.err
	if err == nil {
		if list, _, _ = dedupe(list); len(list) == 0 {
			err = errors.New("no endpoints")
		}
	}
	if err != nil {
		if !m.isClosed() {
			m.log(level.WarnValue(), "discovery failed; keeping the endpoints", "err", err, "endpoints", strings.Join(m.sw.list, ","))
		}
		return
	}
	m.sw.list = list
}

// stopDiscovery ends the call under way, for Close.
func (m *Manager) stopDiscovery() {
	if m.sw == nil {
		return
	}
	m.sw.disc.mu.Lock()
	defer m.sw.disc.mu.Unlock()
	if m.sw.disc.running != nil {
		m.sw.disc.running()
	}
}

// discover calls the discovery function, recovering a panic.
func (m *Manager) discover(ctx context.Context) (list []string, err error) {
	defer func() {
		if p := recovered("discovery", recover()); p != nil {
			list, err = nil, p
		}
	}()
	return m.sw.discover(ctx)
}

// order returns the endpoints in the order a round of dials tries them:
// for Priority the list; for Spread the endpoint this Manager's number
// from the process-wide rotation gives it in the sorted list (sorted, so
// that Managers given the list in different orders, as DNS may, still
// agree), then the others by this Manager's hash. The number is fixed, so
// that whenever every Manager has dialed since the list last changed,
// those of one process are spread exactly.
func (m *Manager) order() []string {
	if m.sw == nil {
		return []string{m.address}
	}
	list := m.sw.list
	if m.sw.policy != Spread || len(list) < 2 {
		return list
	}
	first := slices.Sorted(slices.Values(list))[m.sw.pick%uint64(len(list))]
	rest := make([]string, 0, len(list)-1)
	for _, a := range list {
		if a != first {
			rest = append(rest, a)
		}
	}
	slices.SortFunc(rest, func(a, b string) int {
		ha, hb := mix(m.sw.seed, a), mix(m.sw.seed, b)
		switch {
		case ha < hb:
			return -1
		case ha > hb:
			return 1
		}
		return strings.Compare(a, b)
	})
	return append([]string{first}, rest...)
}

// mix hashes s with seed (FNV-1a, then a finalizer): a stable order per
// Manager that changes little when endpoints come and go.
func mix(seed uint64, s string) uint64 {
	h := seed ^ 0xcbf29ce484222325
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// above returns the endpoints listed before e (Priority), the ones a
// fail-back probe dials; nil for the first. An endpoint discovery no
// longer lists is below them all.
func (m *Manager) above(e string) []string {
	if m.sw == nil || m.sw.policy != Priority {
		return nil
	}
	i := slices.Index(m.sw.list, e)
	if i < 0 {
		i = len(m.sw.list)
	}
	return m.sw.list[:i]
}

// spread10 spreads d by ±10%. A d too large to spread means never, and
// is returned as it is.
func spread10(d time.Duration) time.Duration {
	if d > math.MaxInt64/2 {
		return d
	}
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// maxProbeBackoff bounds probeBackoff: the probe interval grows at most
// 64-fold.
const maxProbeBackoff = 6

// probeEvery returns the probe interval, doubled probeBackoff times.
func (s *switcher) probeEvery() time.Duration {
	d := s.probeInterval
	for range s.probeBackoff {
		if d > math.MaxInt64/2 {
			return d
		}
		d *= 2
	}
	return d
}

// later returns now + d (ns since the epoch), saturating.
func later(now int64, d time.Duration) int64 {
	if int64(d) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(d)
}
