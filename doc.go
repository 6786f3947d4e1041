// Package conn keeps one network connection alive for a program that writes
// through it. A Manager dials the connection, hands it out with Take, takes
// back the errors seen on it with Put, writes with Write, and reconnects with
// jittered exponential backoff.
//
// The API is that of go-kit's util/conn (github.com/go-kit/kit/util/conn):
// a program written against it compiles and behaves the same with only the
// import path changed. Unlike go-kit's Manager, this one
//
//   - can be closed: Close stops every goroutine it started and closes the
//     connection, also while a dial or a backoff wait is in progress;
//   - never blocks a writer forever: each Write returns within the write
//     timeout (WithWriteTimeout) of its start, whatever other Writes do, and
//     after the first dial attempt Write never waits for a dial that is not
//     already known to be quick; a TLS handshake is part of the dial;
//   - notices a connection that its peer closed while it sat idle before
//     writing on it, and redials and writes on the new connection instead of
//     handing the bytes to a socket that will discard them, while a peer
//     that only half-closed keeps getting every line (on Linux with ppoll;
//     on the other Unixes with a peek, which does not see a close behind
//     data the program never read, such as a TLS peer's; not on Windows:
//     see Platforms in the README);
//   - replaces a dead connection once, however many writers saw it fail, and
//     never lets an error from an old connection close its successor;
//   - costs an atomic load per Take and a few nanoseconds per Write: the hot
//     path goes through no other goroutine and takes no contended lock;
//   - survives user code that panics in its background goroutines (a
//     Dialer, a hook, a logger): see the options.
//
// A Manager may also have several endpoints (WithEndpoints, WithDiscovery):
// it fails over down a priority list and back (Priority), or spreads a
// fleet of clients evenly over them (Spread); a dial that hangs does not
// hold up the next endpoint (WithDialStagger); and connections can be
// rotated to rebalance and follow DNS (WithMaxConnectionAge). Every such
// switch is graceful: the old connection is closed only once the Writes
// under way on it have returned, so a switch loses nothing and tears
// nothing. Only the loss of an endpoint can lose what was in flight to it.
//
// A BatchWriter queues small messages and writes them in the background,
// so that its caller never waits on the network. Given a protocol in which
// the collector acknowledges messages (WithAcks; RELP in the relp
// subpackage), it keeps each message until it is acknowledged and sends
// the unacknowledged ones again after a lost connection: a collector's
// restart then loses nothing, and a nil error from Flush or Close means
// the collector has every message.
//
// Another protocol that acknowledges plugs in by implementing AckProtocol
// (a handshake per connection) and AckSession (framing a batch of
// messages numbered by the BatchWriter, and reading what the peer
// acknowledged as "every message below n"); the window, the replay, the
// counting, Flush and Close stay the BatchWriter's. Lumberjack v2 would
// frame each batch as a window frame and numbered data frames and map its
// cumulative ack frames to those numbers; Fluentd's forward protocol would
// frame each batch as one PackedForward entry with a chunk id and map each
// chunk's ack to the end of its batch. See ack.go.
//
// See RELIABILITY.md in the repository for what a nil error from Write
// promises and what can still be lost.
package conn
