package testnet

import (
	"sync"
	"time"
)

// signal is a mutex plus a broadcast used by the helpers' Wait methods.
// Code that changes guarded state calls notifyLocked with mu held; waiters
// re-check their condition each time the current channel is closed.
type signal struct {
	mu      sync.Mutex
	changed chan struct{} // nil until someone waits; closed on change
}

// notifyLocked wakes every waiter. mu must be held.
func (s *signal) notifyLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// waitUntil blocks until cond is true or timeout elapses, and reports
// whether cond held. cond is called without mu held (so it may use the
// helper's locking getters) and is re-evaluated after every notification.
func (s *signal) waitUntil(timeout time.Duration, cond func() bool) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		// Take the channel before evaluating cond, so a change that
		// happens after the evaluation is guaranteed to close it.
		s.mu.Lock()
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			return cond()
		}
	}
}
