package conn_test

// Failover and fail-back on real loopback sockets: every line counted, by
// writer and sequence number, at the primary and the standby.

import (
	"slices"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// endOn writes "end" until it succeeds, then waits until it has arrived
// at sink and the sink has no other connection open: then every line
// written before it has arrived, on that connection or an older one, which
// the sink read to its end.
func endOn(t *testing.T, m *conn.Manager, sink *testnet.Sink) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := m.Write([]byte("end\n")); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("final Write: %v", err)
		}
	}
	if !sink.WaitUntil(func() bool { return slices.Contains(sink.Lines(), "end") && sink.OpenConns() <= 1 }, 10*time.Second) {
		t.Fatalf("the final line did not arrive, or older connections stay open (%d open)", sink.OpenConns())
	}
}

func TestScenarioPriorityFailoverAndFailback(t *testing.T) {
	scenario(t)
	t.Run("reset", func(t *testing.T) {
		// Lines written into the primary's connection after it stopped
		// reading are discarded by the reset: a few per writer.
		failoverAndBack(t, 4, func(s *testnet.Sink) {
			s.ResetAll()
			s.Stop()
		})
	})
	t.Run("graceful", func(t *testing.T) {
		// The FIN is noticed within 10 ms while the primary still reads:
		// nothing may be lost.
		failoverAndBack(t, 0, func(s *testnet.Sink) { go s.StopGracefully(time.Second) })
	})
}

// failoverAndBack writes from 8 goroutines through a Manager with a
// primary and a standby, stops the primary with stop, starts it again,
// and checks that the lines moved to the standby and back, with at most
// lostPerWriter acknowledged lines lost per writer at the failover and
// none at the fail-back.
func failoverAndBack(t *testing.T, lostPerWriter int, stop func(*testnet.Sink)) {
	const (
		writers = 8
		probe   = 300 * time.Millisecond
	)
	primary := testnet.NewSink(t, "tcp")
	standby := testnet.NewSink(t, "tcp")
	var evs events
	m := conn.New("tcp", primary.Addr(), conn.WithEndpoints(standby.Addr()),
		conn.WithProbeInterval(probe), conn.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		conn.WithStateHook(evs.hook))
	defer m.Close()

	done := make(chan struct{})
	results := numbered(0, writers, time.Millisecond, m.Write, done)
	if !primary.WaitLines(200, 10*time.Second) {
		t.Fatal("no lines at the primary")
	}
	stopped := time.Now()
	stop(primary)
	if !standby.WaitLines(200, 10*time.Second) {
		t.Fatal("the lines did not move to the standby")
	}
	failover := time.Since(stopped)
	if st := m.Stats(); st.Endpoint != standby.Addr() {
		t.Errorf("Stats().Endpoint = %q after the failover, want the standby %q", st.Endpoint, standby.Addr())
	}
	if primary.WaitUntil(func() bool { return primary.OpenConns() == 0 }, 5*time.Second); primary.OpenConns() != 0 {
		t.Fatal("the primary still has connections")
	}
	atPrimary := primary.LineCount()
	if err := primary.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if !primary.WaitUntil(func() bool { return primary.LineCount() > atPrimary+200 }, 10*time.Second) {
		t.Fatal("the lines did not move back to the primary")
	}
	failback := time.Since(back)
	// The probe interval is spread by ±10%; the first probe may be due
	// almost a whole interval after the primary is back.
	if bound := probe*11/10 + time.Second; failback > bound {
		t.Errorf("lines returned to the primary %v after it was back, want within the probe interval (%v) and a margin: %v", failback, probe, bound)
	}
	if evs.find(back, func(ev conn.Event) bool {
		return ev.State == conn.Connected && ev.Switch == conn.Failback && ev.Endpoint == primary.Addr()
	}).IsZero() {
		t.Error("no Failback event to the primary")
	}
	time.Sleep(100 * time.Millisecond) // lines on the primary after the move
	close(done)
	rs := results()
	endOn(t, m, primary)

	received := append(primary.Lines(), standby.Lines()...)
	lg := account(t, rs, received, "end")
	if lg.failedButReceived > 0 {
		t.Errorf("%d lines received although Write reported them failed", lg.failedButReceived)
	}
	if bound := writers * lostPerWriter; lg.lost > bound {
		t.Errorf("%d acknowledged lines lost at the failover, more than %d", lg.lost, bound)
	}
	if n := lg.lostSince(back); n > 0 {
		t.Errorf("%d acknowledged lines lost after the primary was back: the fail-back must lose nothing", n)
	}
	if f := primary.Fragments(); lostPerWriter == 0 && len(f) > 0 {
		t.Errorf("torn lines at the primary: %q", f)
	}
	if f := standby.Fragments(); len(f) > 0 {
		t.Errorf("torn lines at the standby: %q", f)
	}
	if st := m.Stats(); st.Switches < 1 || st.Endpoint != primary.Addr() {
		t.Errorf("Stats() = %+v, want a switch and the primary", st)
	}
	t.Logf("%d writers: %d lines acked, %d failed (reported), %d acked but lost; failover %v, failback %v; connections: primary %d, standby %d",
		writers, lg.acked, lg.failed, lg.lost, failover.Round(time.Millisecond), failback.Round(time.Millisecond), primary.Accepted(), standby.Accepted())
}
