package conn

import (
	"errors"
	"fmt"
	"net"
	"runtime/debug"
)

// The Manager calls user code — the Dialer, the AfterFunc, the logger, the
// state hook, and the methods of the connections and errors they return —
// from its own goroutine and the BatchWriter's. A panic there would kill
// the program far from its cause, so it is recovered and turned into an
// error where one fits: a panicking Dialer is a failed dial, a panicking
// connection a lost one; a panicking hook or logger is disabled, and an
// AfterFunc replaced by time.After. A panic in the caller's own goroutine
// (in a connection's Write under Manager.Write, say) is left to the caller.

// A panicError is a recovered panic of user code.
type panicError struct {
	what  string // the code that panicked: "Dialer", "state hook", ...
	value any    // what it panicked with
	stack []byte // where
}

func (e *panicError) Error() string {
	return fmt.Sprintf("conn: %s panicked: %v", e.what, e.value)
}

// recovered returns a panicError for a value recovered from what, or nil
// when there was no panic.
func recovered(what string, value any) error {
	if value == nil {
		return nil
	}
	return &panicError{what: what, value: value, stack: debug.Stack()}
}

// An opaqueError stands in for an error whose methods panic.
type opaqueError struct {
	typ   string
	value any
}

func (e *opaqueError) Error() string {
	return fmt.Sprintf("conn: an error of type %s whose methods panic (%v)", e.typ, e.value)
}

// sane returns err if the Manager can use it — print it, and match it with
// errors.Is and errors.As as it does — or a stand-in naming its type if
// its methods panic.
func sane(err error) (out error) {
	defer func() {
		if r := recover(); r != nil {
			out = &opaqueError{typ: fmt.Sprintf("%T", err), value: r}
		}
	}()
	if err == nil {
		return nil
	}
	_ = err.Error()
	if budget := maxWrapped; !walkWrapped(err, &budget) {
		// errors.Is and errors.As would never return.
		return &opaqueError{typ: fmt.Sprintf("%T", err), value: "its chain of wrapped errors does not end"}
	}
	var op *net.OpError
	_ = errors.As(err, &op)
	_ = errors.Is(err, errRefused)
	_ = isTimeout(err)
	return err
}

// maxWrapped bounds the errors sane follows through Unwrap.
const maxWrapped = 1000

// walkWrapped reports whether the tree of errors that err wraps, err
// included, has at most *budget errors, using the budget up: one whose
// Unwrap returns itself or an ancestor does not.
func walkWrapped(err error, budget *int) bool {
	for err != nil {
		if *budget--; *budget < 0 {
			return false
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if !walkWrapped(e, budget) {
					return false
				}
			}
			return true
		default:
			return true
		}
	}
	return true
}

// loseOnPanic, deferred where the Manager calls a connection's methods
// in its own goroutine or for the BatchWriter's Close, turns a panic into
// the loss of the connection.
func (m *Manager) loseOnPanic(l *link) {
	if p := recovered("connection", recover()); p != nil {
		m.retire(l, p)
	}
}

// closeConn closes c, recovering a panic of its Close.
func closeConn(c net.Conn) {
	defer func() { _ = recover() }()
	c.Close()
}
