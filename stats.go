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
}

// Stats is a snapshot of a Manager's counters, returned by Manager.Stats.
type Stats struct {
	State        State
	Dials        uint64    // dial attempts finished
	DialFailures uint64    // dial attempts that failed
	Lost         uint64    // connections invalidated: by a failed Write, a Put, or the liveness check
	LastError    error     // the most recent dial failure or loss cause; nil if none yet
	Since        time.Time // when State was entered
}
