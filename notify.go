package conn

import (
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// nopLogger is the logger that discards; a Manager with it and no hook
// delivers nothing.
var nopLogger = log.NewNopLogger()

// The Manager's log lines and state hook calls are delivered by a goroutine
// of their own, started when there is something to deliver and ending when
// there is nothing left, so that the Manager's goroutine never waits for
// user code. A logger may thus write back into the Manager it logs for: its
// Write may wait for the dial that the Manager's goroutine goes on to make,
// instead of for itself.

// maxNotes bounds the notes waiting for delivery. A Manager that changes
// state faster than its logger or hook keeps up waits for them.
const maxNotes = 64

// A note is a log line and, for a change of state, an Event for the hook.
type note struct {
	kv []any
	ev *Event
}

// log queues a line for the logger, at lvl. It never waits: the lines it
// queues are rare (a recovered panic, a BatchWriter's drop report, at most
// once per interval) and may come from the delivering goroutine itself.
func (m *Manager) log(lvl level.Value, msg string, kv ...any) {
	if !m.listened() {
		return
	}
	m.notify(note{kv: append([]any{level.Key(), lvl, "msg", msg}, kv...)}, false)
}

// listened reports whether anyone hears the notes: without a logger or a
// hook there is no goroutine, no queue and no allocation.
func (m *Manager) listened() bool {
	return m.cfg.hook != nil || m.cfg.logger != nopLogger
}

// notify queues n for delivery. With wait, it first waits while maxNotes
// are queued: the Manager's goroutine waits so for a logger that does not
// keep up. After Close has delivered the last notes, n is dropped: nobody
// is listening.
func (m *Manager) notify(n note, wait bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for wait && len(m.notes) >= maxNotes && !m.notesOver {
		if m.noteTaken == nil {
			m.noteTaken = make(chan struct{})
		}
		taken := m.noteTaken
		m.mu.Unlock()
		<-taken
		m.mu.Lock()
	}
	if m.notesOver {
		return
	}
	m.notes = append(m.notes, n)
	if !m.notifying {
		m.notifying = true
		m.delivering.Add(1)
		go m.deliver()
	}
}

// deliver passes the queued notes, in order, to the logger and the hook,
// until there are none.
func (m *Manager) deliver() {
	defer m.delivering.Done()
	for {
		m.mu.Lock()
		if len(m.notes) == 0 {
			m.notes = nil
			m.notifying = false
			m.mu.Unlock()
			return
		}
		n := m.notes[0]
		m.notes[0] = note{}
		m.notes = m.notes[1:]
		if m.noteTaken != nil {
			close(m.noteTaken)
			m.noteTaken = nil
		}
		m.mu.Unlock()
		m.logLine(n.kv)
		if n.ev != nil {
			m.callHook(*n.ev)
		}
	}
}

// endNotes waits until the queued notes are delivered; notes queued later
// are dropped. Close calls it once the Manager's goroutine has ended.
func (m *Manager) endNotes() {
	m.mu.Lock()
	m.notesOver = true
	if m.noteTaken != nil {
		close(m.noteTaken)
		m.noteTaken = nil
	}
	m.mu.Unlock()
	m.delivering.Wait()
}

// logLine passes a line to the logger. A logger that panics is disabled:
// there is nowhere left to report it.
func (m *Manager) logLine(kv []any) {
	if m.logOff.Load() {
		return
	}
	defer func() {
		if recover() != nil {
			m.logOff.Store(true)
		}
	}()
	m.cfg.logger.Log(kv...)
}
