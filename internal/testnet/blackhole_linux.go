package testnet

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// How Blackhole works (Linux): tcp_conn_request drops an incoming SYN
// without any reply while the listener's accept queue is full
// (sk_ack_backlog > sk_max_ack_backlog), regardless of tcp_syncookies. So a
// raw listening socket with backlog 1 that nobody accepts from, whose queue
// the helper fills by dialing and holding two connections of its own, makes
// every further connect retransmit SYNs into the void until the dialer's
// timeout or context ends it — never ECONNREFUSED.
//
// Backlog 1 rather than 0: with backlog 0 the SYN (request) queue also
// counts as full at length 0, so with tcp_syncookies=1 the fill connections
// are answered with syncookies and the kernel logs "Possible SYN flooding";
// with tcp_syncookies=0 even the fill connections would hang. With backlog
// 1 and fills made one at a time, the request queue is empty at every fill,
// so the fills complete normally under any tcp_syncookies setting.
//
// Whether the queue is really full is not guessed: the helper reads the
// listener's TCP_INFO, where for a listening socket tcpi_unacked is the
// accept-queue length and tcpi_sacked its limit.
const (
	blackholeBacklog     = 1
	blackholeMaxFills    = 4               // safety bound; 2 are needed
	blackholeFillTimeout = 2 * time.Second // a fill connect on loopback is instant
	blackholeQueueWait   = 2 * time.Second // for the final ACK to land in the queue
)

// Blackhole is a TCP address on 127.0.0.1 where connection attempts hang:
// no SYN-ACK and no RST ever comes back, so a dial fails only by its own
// timeout or context (a net.Error with Timeout() true). It is a listening
// socket, made with raw syscalls, that is never accepted from and whose
// accept queue is kept full by connections the Blackhole dialed itself.
//
// All methods are safe for concurrent use. Close (also run by tb.Cleanup)
// closes the listening socket and the held connections (after which
// pending SYN retransmits are answered with RST); it is idempotent and
// starts no goroutines.
type Blackhole struct {
	addr string

	mu    sync.Mutex // guards the fields below
	fd    int        // listening socket; -1 once closed
	fills []net.Conn // connections holding the accept queue full
}

// NewBlackhole creates a Blackhole on a free 127.0.0.1 port and registers
// Close with tb.Cleanup. It fails the test if the socket cannot be made or
// its accept queue cannot be confirmed full, and skips it where TCP_INFO
// comes cut short (qemu-user passes on only its first word).
func NewBlackhole(tb testing.TB) *Blackhole {
	tb.Helper()
	b, err := newBlackhole()
	if errors.Is(err, errTCPInfoShort) {
		tb.Skipf("testnet: NewBlackhole: %v", err)
	}
	if err != nil {
		tb.Fatalf("testnet: NewBlackhole: %v", err)
	}
	tb.Cleanup(b.Close)
	return b
}

// Addr returns the "127.0.0.1:port" address whose connects hang.
func (b *Blackhole) Addr() string { return b.addr }

// Close closes the held connections and the listening socket. It is
// idempotent.
func (b *Blackhole) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.fills {
		_ = c.Close()
	}
	b.fills = nil
	if b.fd >= 0 {
		_ = syscall.Close(b.fd)
		b.fd = -1
	}
}

func newBlackhole() (*Blackhole, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	b := &Blackhole{fd: fd}
	if err := b.listenAndFill(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Blackhole) listenAndFill() error {
	if err := syscall.Bind(b.fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(b.fd, blackholeBacklog); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	sa, err := syscall.Getsockname(b.fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	sa4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		return fmt.Errorf("getsockname: unexpected %T", sa)
	}
	b.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(sa4.Port))

	for {
		queued, limit, err := acceptQueue(b.fd)
		if err != nil {
			return err
		}
		if queued > limit { // sk_acceptq_is_full: further SYNs are dropped
			return nil
		}
		if len(b.fills) == blackholeMaxFills {
			return fmt.Errorf("accept queue holds %d (limit %d) after %d connections, not full", queued, limit, len(b.fills))
		}
		c, err := net.DialTimeout("tcp", b.addr, blackholeFillTimeout)
		if err != nil {
			return fmt.Errorf("filling accept queue: %w", err)
		}
		b.fills = append(b.fills, c)
		if err := waitAcceptQueue(b.fd, len(b.fills)); err != nil {
			return err
		}
	}
}

// waitAcceptQueue waits until the listener's accept queue holds n
// connections. connect() returns when the client gets the SYN-ACK; the
// server side joins the queue when it processes the final ACK, which on
// loopback is almost always already done. The kernel offers no
// notification for this short of accepting, so this polls.
func waitAcceptQueue(fd, n int) error {
	deadline := time.Now().Add(blackholeQueueWait)
	for {
		queued, _, err := acceptQueue(fd)
		if err != nil {
			return err
		}
		if queued >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("accept queue holds %d connections after %v, want %d", queued, blackholeQueueWait, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// acceptQueue returns the current accept-queue length and its limit for a
// listening socket, from TCP_INFO (tcpi_unacked and tcpi_sacked carry
// those values when tcpi_state is LISTEN).
func acceptQueue(fd int) (queued, limit int, err error) {
	info, err := tcpInfo(fd)
	if err != nil {
		return 0, 0, err
	}
	const tcpListen = 10 // TCP_LISTEN in include/net/tcp_states.h
	if info.State != tcpListen {
		return 0, 0, fmt.Errorf("TCP_INFO: socket state %d, want LISTEN", info.State)
	}
	return int(info.Unacked), int(info.Sacked), nil
}

// errTCPInfoShort: the kernel, or what stands for it (qemu-user), wrote
// less of TCP_INFO than acceptQueue reads.
var errTCPInfoShort = errors.New("TCP_INFO cut short (an emulator?)")

// tcpInfoNeeded is how much of TCP_INFO acceptQueue reads: up to Sacked.
const tcpInfoNeeded = uint32(unsafe.Offsetof(syscall.TCPInfo{}.Sacked) + unsafe.Sizeof(syscall.TCPInfo{}.Sacked))
