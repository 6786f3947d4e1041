package conn

// The promise the fence rests on (fence.go): the net package's sockets run
// syscall.RawConn's Write under the write lock their Writes hold, so a
// shutdown there waits for a Write blocked half-way, and a Write after it
// writes nothing.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/internal/testnet"
)

func TestFenceWaitsForTheWriteUnderWay(t *testing.T) {
	if !canShutdown {
		t.Skip("no socket descriptors to shut down here")
	}
	c, peer := tcpLoopback(t)
	if fenceOf(c) != fenceShutdown {
		t.Fatalf("fenceOf(%T) = %d, want fenceShutdown", c, fenceOf(c))
	}

	// Far more than the socket buffers hold: the Write blocks half-way
	// until the peer reads.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	wrote := make(chan error, 1)
	go func() {
		n, err := c.Write(big)
		if err == nil && n != len(big) {
			err = io.ErrShortWrite
		}
		wrote <- err
	}()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(peer, head); err != nil { // the Write is under way
		t.Fatal(err)
	}
	fenced := make(chan error, 1)
	go func() { fenced <- shutdownBetweenWrites(c.(*net.TCPConn)) }()
	// A fence that did not wait would shut the socket down now and fail
	// the Write half-way: give it the time to, before reading on.
	select {
	case err := <-fenced:
		t.Fatalf("the fence returned (%v) while a Write was blocked half-way", err)
	case err := <-wrote:
		t.Fatalf("the Write returned (%v) while the peer did not read", err)
	case <-time.After(100 * time.Millisecond):
	}

	got := make(chan []byte, 1)
	go func() {
		rest, _ := io.ReadAll(peer) // until the shutdown's FIN
		got <- rest
	}()
	if err := await(t, wrote, "the Write"); err != nil {
		t.Fatalf("the Write under way at the fence: %v", err)
	}
	if err := await(t, fenced, "the fence"); err != nil {
		t.Fatalf("the fence: %v", err)
	}
	rest := await(t, got, "the peer's read")
	if all := append(head, rest...); !bytes.Equal(all, big) {
		t.Fatalf("the peer read %d bytes before the FIN, want the %d of the Write, whole", len(all), len(big))
	}
	if n, err := c.Write([]byte("late\n")); n != 0 || err == nil {
		t.Fatalf("a Write after the fence = %d, %v: want 0 bytes and an error", n, err)
	}
}

// await returns what ch delivers, failing t if that takes over 30 s.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not return", what)
		panic("unreachable")
	}
}

func TestFenceOfEachKindOfConnection(t *testing.T) {
	want := fenceShutdown
	if !canShutdown {
		want = fenceNone
	}
	for _, tc := range []struct {
		c    net.Conn
		want fence
	}{
		{&net.TCPConn{}, want},
		{&net.UnixConn{}, want},
		{&net.UDPConn{}, fenceClose},
		{&net.IPConn{}, fenceClose},
		{tls.Client(nil, nil), fenceCloseWrite},
		{embedsTCP{&net.TCPConn{}}, fenceNone}, // may write in several steps
		{embedsTLS{tls.Client(nil, nil)}, fenceNone},
		{&Conn{}, fenceNone},        // another package's Conn
		{tlsConnValue{}, fenceNone}, // not a pointer
		{nil, fenceNone},
	} {
		if got := fenceOf(tc.c); got != tc.want {
			t.Errorf("fenceOf(%T) = %d, want %d", tc.c, got, tc.want)
		}
	}
}

type (
	embedsTCP struct{ *net.TCPConn }
	embedsTLS struct{ *tls.Conn }
	Conn      struct{ net.Conn } // named like tls.Conn, in this package
	// tlsConnValue is a net.Conn that is not a pointer.
	tlsConnValue struct{ net.Conn }
)

// tcpLoopback returns both ends of a loopback TCP connection, closed
// when t ends.
func tcpLoopback(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// A link idle past its write deadline: the fence finds the deadline
// passed, under the write lock, so no Write is under way; the switch
// clears it and closes the link for writing all the same.
func TestFenceAfterTheWriteDeadlinePassed(t *testing.T) {
	if !canShutdown {
		t.Skip("no socket descriptors to shut down here")
	}
	c, peer := tcpLoopback(t)
	m := New("tcp", "127.0.0.1:1", WithWriteTimeout(time.Second))
	defer m.Close()
	l := &link{conn: c, fence: fenceOf(c), dead: make(chan struct{}), next: make(chan struct{})}
	m.forceDeadline(l, max(m.now(), 1)) // passed
	if err := shutdownBetweenWrites(c.(*net.TCPConn)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the fence past the write deadline: %v, want os.ErrDeadlineExceeded (what closeWrites clears)", err)
	}
	if !m.closeWrites(l) {
		t.Fatal("closeWrites on a link past its write deadline failed: the switch would close it without lingering")
	}
	if l.deadline.Load() != 0 {
		t.Errorf("the link's deadline is %d after the fence cleared it, want 0 (none)", l.deadline.Load())
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := peer.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("the peer read %d, %v: want the FIN of the fence", n, err)
	}
}

// A unix datagram socket is closed at its switch, as a UDP one: a
// datagram goes whole or not at all, and there is no peer's close to
// linger for.
func TestFenceOfAUnixDatagramSocket(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("no unix datagram sockets here")
	}
	path := testnet.FreeUnixPath(t)
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := fenceOf(c); got != fenceClose {
		t.Errorf("fenceOf(a unixgram socket) = %d, want fenceClose", got)
	}
	if got := fenceOf(ln); got != fenceClose {
		t.Errorf("fenceOf(a bound unixgram socket) = %d, want fenceClose", got)
	}
}

// The switch clears only a deadline that has passed: one a Write armed
// meanwhile bounds that Write.
func TestClearExpiredDeadlineKeepsAFreshOne(t *testing.T) {
	c, _ := tcpLoopback(t)
	m := New("tcp", "127.0.0.1:1", WithWriteTimeout(time.Second))
	defer m.Close()
	l := &link{conn: c, dead: make(chan struct{}), next: make(chan struct{})}
	fresh := m.now() + int64(time.Hour)
	m.forceDeadline(l, fresh)
	m.clearExpiredDeadline(l)
	if got := l.deadline.Load(); got != fresh {
		t.Errorf("a deadline an hour ahead became %d, want it kept (%d)", got, fresh)
	}
	m.forceDeadline(l, max(m.now(), 1))
	m.clearExpiredDeadline(l)
	if got := l.deadline.Load(); got != 0 {
		t.Errorf("a passed deadline became %d, want it cleared (0)", got)
	}
}
