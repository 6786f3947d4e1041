package testnet

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

var streamNetworks = []string{"tcp", "unix"}

func TestSinkCountsLinesAndFragments(t *testing.T) {
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			s := NewSink(t, network)
			if s.Network() != network {
				t.Fatalf("Network() = %q, want %q", s.Network(), network)
			}
			c1 := dial(t, network, s.Addr())
			write(t, c1, "a\nb")
			write(t, c1, "\n\nc")
			if !s.WaitLines(3, waitLong) {
				t.Fatalf("lines = %q, want 3", s.Lines())
			}
			c2 := dial(t, network, s.Addr())
			write(t, c2, "x\ntorn")
			if !s.WaitLines(4, waitLong) {
				t.Fatalf("lines = %q, want 4", s.Lines())
			}
			_ = c2.Close()
			if !s.WaitUntil(func() bool { return len(s.Fragments()) == 1 }, waitLong) {
				t.Fatalf("fragments = %q, want 1", s.Fragments())
			}
			if got, want := s.Lines(), []string{"a", "b", "", "x"}; !slices.Equal(got, want) {
				t.Errorf("Lines() = %q, want %q", got, want)
			}
			if got := s.LineCount(); got != 4 {
				t.Errorf("LineCount() = %d, want 4", got)
			}
			if got, want := s.Fragments(), []string{"torn"}; !slices.Equal(got, want) {
				t.Errorf("Fragments() = %q, want %q", got, want)
			}
			byConn := s.LinesByConn()
			if len(byConn) != 2 || !slices.Equal(byConn[0], []string{"a", "b", ""}) || !slices.Equal(byConn[1], []string{"x"}) {
				t.Errorf("LinesByConn() = %q", byConn)
			}
			if got := s.Accepted(); got != 2 {
				t.Errorf("Accepted() = %d, want 2", got)
			}
			if got := s.OpenConns(); got != 1 {
				t.Errorf("OpenConns() = %d, want 1 (c1)", got)
			}
			// c1's pending "c" becomes a fragment when the Sink closes it.
			s.Close()
			if got, want := s.Fragments(), []string{"torn", "c"}; !slices.Equal(got, want) {
				t.Errorf("after Close, Fragments() = %q, want %q", got, want)
			}
		})
	}
}

func TestSinkConcurrentClientsKeepPerConnOrder(t *testing.T) {
	const clients, perClient = 8, 200
	s := NewSink(t, "tcp")
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", s.Addr(), waitLong)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(waitLong))
			for j := range perClient {
				if _, err := fmt.Fprintf(c, "%d-%d\n", i, j); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !s.WaitLines(clients*perClient, waitLong) {
		t.Fatalf("got %d lines, want %d", s.LineCount(), clients*perClient)
	}
	for _, lines := range s.LinesByConn() {
		if len(lines) != perClient {
			t.Fatalf("connection has %d lines, want %d", len(lines), perClient)
		}
		var client int
		if _, err := fmt.Sscanf(lines[0], "%d-0", &client); err != nil {
			t.Fatalf("first line %q: %v", lines[0], err)
		}
		for j, l := range lines {
			if want := fmt.Sprintf("%d-%d", client, j); l != want {
				t.Fatalf("line %d = %q, want %q", j, l, want)
			}
		}
	}
	if len(s.Fragments()) != 0 {
		t.Errorf("unexpected fragments %q", s.Fragments())
	}
}

func TestSinkIdleTimeoutClosesGracefully(t *testing.T) {
	const idle = 150 * time.Millisecond
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			s := NewSink(t, network, WithIdleTimeout(idle))
			c := dial(t, network, s.Addr())
			start := time.Now()
			write(t, c, "hello\npart")
			err := readUntilEnd(t, c)
			elapsed := time.Since(start)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("client read: %v, want io.EOF (graceful close)", err)
			}
			if elapsed < idle {
				t.Errorf("closed after %v, before the idle timeout %v", elapsed, idle)
			}
			if !s.WaitUntil(func() bool { return s.OpenConns() == 0 }, waitLong) {
				t.Fatal("sink still has the connection open")
			}
			if got := s.Lines(); !slices.Equal(got, []string{"hello"}) {
				t.Errorf("Lines() = %q", got)
			}
			if got := s.Fragments(); !slices.Equal(got, []string{"part"}) {
				t.Errorf("Fragments() = %q", got)
			}
		})
	}
}

func TestSinkIdleTimeoutResetByData(t *testing.T) {
	const idle = 800 * time.Millisecond
	s := NewSink(t, "tcp", WithIdleTimeout(idle))
	c := dial(t, "tcp", s.Addr())
	// Keep writing for longer than the idle timeout, with gaps well under
	// it (slack for slow -race runs on shared cores).
	for i := range 6 {
		write(t, c, fmt.Sprintf("%d\n", i))
		if !s.WaitLines(i+1, waitLong) {
			t.Fatalf("line %d not received", i)
		}
		time.Sleep(idle / 4) // pacing the client, not synchronisation
	}
	if got := s.OpenConns(); got != 1 {
		t.Fatalf("OpenConns() = %d while the client kept sending, want 1", got)
	}
}

func TestSinkRestartKeepsAddress(t *testing.T) {
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			s := NewSink(t, network)
			addr := s.Addr()
			c1 := dial(t, network, addr)
			write(t, c1, "before\n")
			if !s.WaitLines(1, waitLong) {
				t.Fatal("first line not received")
			}

			s.Stop()
			if err := readUntilEnd(t, c1); !errors.Is(err, io.EOF) {
				t.Errorf("client of stopped sink read: %v, want io.EOF", err)
			}
			if c, err := net.DialTimeout(network, addr, waitLong); err == nil {
				_ = c.Close()
				t.Fatal("dial to stopped sink succeeded")
			} else if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dial to stopped sink: %v, want connection refused", err)
			}
			s.Stop() // idempotent

			if err := s.Restart(20 * time.Millisecond); err != nil {
				t.Fatalf("Restart: %v", err)
			}
			if got := s.Addr(); got != addr {
				t.Fatalf("Addr() after restart = %q, want %q", got, addr)
			}
			if err := s.Start(); err != nil { // no-op while running
				t.Fatalf("Start on running sink: %v", err)
			}
			c2 := dial(t, network, addr)
			write(t, c2, "after\n")
			if !s.WaitLines(2, waitLong) || !s.WaitAccepted(2, waitLong) {
				t.Fatalf("after restart: lines %q, accepted %d", s.Lines(), s.Accepted())
			}
			if got := s.Lines(); !slices.Equal(got, []string{"before", "after"}) {
				t.Errorf("Lines() = %q", got)
			}
		})
	}
}

func TestSinkResetAllGivesClientReset(t *testing.T) {
	s := NewSink(t, "tcp")
	c := dial(t, "tcp", s.Addr())
	write(t, c, "x\n")
	if !s.WaitLines(1, waitLong) {
		t.Fatal("line not received")
	}
	if n := s.ResetAll(); n != 1 {
		t.Fatalf("ResetAll() = %d, want 1", n)
	}
	// The RST may still be in flight for the first write; a write that
	// reaches the closed socket provokes another RST, so keep writing.
	_ = c.SetWriteDeadline(time.Now().Add(waitLong))
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = c.Write([]byte("y\n"))
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write after ResetAll: %v, want ECONNRESET or EPIPE", err)
	}
	// The sink keeps serving new connections.
	c2 := dial(t, "tcp", s.Addr())
	write(t, c2, "z\n")
	if !s.WaitLines(2, waitLong) {
		t.Fatalf("lines after ResetAll = %q", s.Lines())
	}
}

func TestSinkTLSRoundTrip(t *testing.T) {
	serverConf, clientConf := SelfSignedTLS(t)
	if clientConf.InsecureSkipVerify {
		t.Fatal("client config skips verification")
	}
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			s := NewSink(t, network, WithTLS(serverConf))
			raw := dial(t, network, s.Addr())
			c := tls.Client(raw, clientConf)
			_ = c.SetDeadline(time.Now().Add(waitLong))
			if err := c.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if len(c.ConnectionState().VerifiedChains) == 0 {
				t.Fatal("no verified chain")
			}
			if _, err := io.WriteString(c, "secret 1\nsecret 2\n"); err != nil {
				t.Fatal(err)
			}
			if !s.WaitLines(2, waitLong) {
				t.Fatalf("lines = %q", s.Lines())
			}
			if got := s.Lines(); !slices.Equal(got, []string{"secret 1", "secret 2"}) {
				t.Errorf("Lines() = %q", got)
			}
			// A client that does not trust the certificate is rejected.
			untrusted := tls.Client(dial(t, network, s.Addr()), &tls.Config{ServerName: "127.0.0.1"})
			_ = untrusted.SetDeadline(time.Now().Add(waitLong))
			if err := untrusted.Handshake(); err == nil {
				t.Error("handshake without RootCAs succeeded")
			}
		})
	}
}

func TestSinkCloseIsIdempotentAndBounded(t *testing.T) {
	s := NewSink(t, "tcp")
	c := dial(t, "tcp", s.Addr())
	write(t, c, "kept\n")
	if !s.WaitLines(1, waitLong) {
		t.Fatal("line not received")
	}
	// A client busy writing must not hold up Close.
	stopWriting := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		chunk := []byte("spam spam spam\n")
		for {
			select {
			case <-stopWriting:
				return
			default:
			}
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	bounded(t, "Close", s.Close)
	bounded(t, "second Close", s.Close)
	close(stopWriting)
	<-writerDone
	if err := s.Start(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Start after Close: %v, want net.ErrClosed", err)
	}
	if got := s.Lines(); len(got) == 0 || got[0] != "kept" {
		t.Errorf("lines lost after Close: first of %d", len(got))
	}
}

func TestSinkStopGracefullyReadsUntilTheClientCloses(t *testing.T) {
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			s := NewSink(t, network)
			c, err := net.Dial(network, s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			write(t, c, "before\n")
			if !s.WaitLines(1, 5*time.Second) {
				t.Fatal("first line not received")
			}
			stopped := make(chan struct{})
			go func() { s.StopGracefully(10 * time.Second); close(stopped) }()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("client read %v, want EOF from the half-close", err)
			}
			write(t, c, "after the FIN\n")
			c.Close()
			select {
			case <-stopped:
			case <-time.After(10 * time.Second):
				t.Fatal("StopGracefully did not return after the client closed")
			}
			if want, have := []string{"before", "after the FIN"}, s.Lines(); !slices.Equal(want, have) {
				t.Fatalf("lines %q, want %q", have, want)
			}
		})
	}
}
