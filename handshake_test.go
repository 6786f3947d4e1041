package conn_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// tlsPipeDialer returns a Dialer that hands out TLS client connections over
// net.Pipe before their handshake, as tls.Client does, and serves the far
// end with serve.
func tlsPipeDialer(cfg *tls.Config, serve func(net.Conn)) conn.Dialer {
	return func(string, string) (net.Conn, error) {
		c, peer := net.Pipe()
		go serve(peer)
		return tls.Client(c, cfg), nil
	}
}

// The Manager completes the TLS handshake of a dialed connection inside the
// dial, bounded by the dial timeout, so that a server that never answers
// cannot make Write block past the write timeout.
func TestTLSHandshakeHappensInTheDial(t *testing.T) {
	t.Run("server never answers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, clientTLS := testnet.SelfSignedTLS(t)
			peers := make(chan net.Conn, 16)
			silent := func(peer net.Conn) { peers <- peer; io.Copy(io.Discard, peer) }
			const writeTimeout = 300 * time.Millisecond
			m := conn.New("tcp", "x:1", conn.WithDialer(contextFree(tlsPipeDialer(clientTLS, silent))),
				conn.WithWriteTimeout(writeTimeout), conn.WithDialTimeout(2*time.Second))
			for range 3 {
				start := time.Now()
				_, err := m.Write([]byte("x"))
				if took := time.Since(start); took > writeTimeout {
					t.Errorf("Write took %v, more than the write timeout: it performed the handshake", took)
				}
				if !errors.Is(err, conn.ErrConnectionUnavailable) {
					t.Errorf("Write: %v, want ErrConnectionUnavailable", err)
				}
			}
			time.Sleep(2 * time.Second)
			st := m.Stats()
			if st.DialFailures == 0 || st.State != conn.Disconnected {
				t.Errorf("stats %+v, want the dial failed by its timeout", st)
			}
			start := time.Now()
			m.Close()
			if took := time.Since(start); took != 0 {
				t.Errorf("Close took %v", took)
			}
			close(peers)
			for p := range peers {
				p.Close()
			}
		})
	})
	t.Run("Close during the handshake", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, clientTLS := testnet.SelfSignedTLS(t)
			peers := make(chan net.Conn, 16)
			silent := func(peer net.Conn) { peers <- peer; io.Copy(io.Discard, peer) }
			m := conn.New("tcp", "x:1", conn.WithDialer(contextFree(tlsPipeDialer(clientTLS, silent))), conn.WithDialTimeout(0))
			p := <-peers
			synctest.Wait()
			start := time.Now()
			m.Close()
			if took := time.Since(start); took != 0 {
				t.Errorf("Close during a handshake took %v", took)
			}
			p.Close()
		})
	})
	t.Run("server answers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			serverTLS, clientTLS := testnet.SelfSignedTLS(t)
			lines := make(chan string, 1)
			serve := func(peer net.Conn) {
				s := tls.Server(peer, serverTLS)
				defer s.Close()
				line, _ := bufio.NewReader(s).ReadString('\n')
				lines <- line
			}
			m := conn.New("tcp", "x:1", conn.WithDialer(contextFree(tlsPipeDialer(clientTLS, serve))))
			defer m.Close()
			c := m.Take()
			if c == nil {
				t.Fatal("no connection")
			}
			if !c.(*tls.Conn).ConnectionState().HandshakeComplete {
				t.Error("Take handed out a connection whose handshake is not complete")
			}
			if _, err := m.Write([]byte("hello\n")); err != nil {
				t.Fatal(err)
			}
			if want, have := "hello\n", <-lines; want != have {
				t.Errorf("server got %q, want %q", have, want)
			}
		})
	})
}
