package conn

import (
	"fmt"
	"time"
)

// State is the state of a Manager's connection.
type State int

// The states, in the order a Manager usually passes through them.
const (
	// Connecting: the first dial has not finished yet.
	Connecting State = iota
	// Connected: Take returns a connection.
	Connected
	// Disconnected: there is no connection; the Manager is waiting to redial
	// or redialing. Take returns nil.
	Disconnected
	// Closed: Close was called. Take returns nil; Write returns ErrClosed.
	Closed
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// An Event is a change of state, passed to the hook set by WithStateHook.
type Event struct {
	// State is the state entered.
	State State
	// Err is why the connection was lost or the dial failed (Disconnected);
	// nil otherwise.
	Err error
	// Attempt counts the consecutive failures so far: failed dials, and
	// connections lost before they proved themselves by a successful Write.
	// It is 0 when a proven connection was lost and is redialed at once.
	Attempt int
	// Wait is how long the Manager waits before the next dial (Disconnected).
	// Zero means at once.
	Wait time.Duration
	// Endpoint is the endpoint connected to (Connected), or the one whose
	// connection was lost or whose dial failed (Disconnected). After a
	// failed round over several endpoints it is empty: Err, an
	// *EndpointsError, names each. It is empty for Closed.
	Endpoint string
	// Switch says why a Connected event replaced a working connection
	// (rotation, fail-back, a change of address); NoSwitch when it follows
	// the first dial or a loss.
	Switch Switch
}

// A Switch is why a Manager replaced a working connection by another. The
// old one is closed only once the Writes under way on it have returned:
// a switch loses nothing and tears nothing (see WithMaxConnectionAge).
type Switch int

const (
	// NoSwitch: the connection followed the first dial or a loss (a
	// failover to another endpoint included).
	NoSwitch Switch = iota
	// Rotation: the connection reached its maximum age
	// (WithMaxConnectionAge).
	Rotation
	// Failback: an endpoint of higher priority accepted again (Priority).
	Failback
	// Move: on a datagram network, the endpoint's addresses changed, or
	// discovery no longer lists it.
	Move
)

func (s Switch) String() string {
	switch s {
	case NoSwitch:
		return "none"
	case Rotation:
		return "rotation"
	case Failback:
		return "failback"
	case Move:
		return "move"
	}
	return fmt.Sprintf("Switch(%d)", int(s))
}

// Stats is a snapshot of a Manager's counters, returned by Manager.Stats.
type Stats struct {
	State        State
	Dials        uint64    // dial attempts finished (with several endpoints: rounds, probes included)
	DialFailures uint64    // dial attempts (rounds) that failed
	Lost         uint64    // connections invalidated: by a failed Write, a Put, or the liveness check
	Switches     uint64    // working connections replaced by another: rotations, fail-backs, moves
	LastError    error     // the most recent dial failure or loss cause; nil if none yet
	Since        time.Time // when State was entered
	Endpoint     string    // the endpoint of the current connection; empty while there is none
}
