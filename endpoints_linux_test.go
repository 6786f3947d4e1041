package conn_test

// A round over several endpoints on real loopback sockets: a hanging primary
// does not hold up the standby, and a Write allocates nothing.

import (
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

func TestScenarioHangingPrimaryDoesNotHoldUpTheStandby(t *testing.T) {
	scenario(t)
	primary := testnet.NewBlackhole(t)
	standby := testnet.NewSink(t, "tcp")
	start := time.Now()
	m := conn.New("tcp", primary.Addr(), conn.WithEndpoints(standby.Addr()))
	defer m.Close()
	if _, err := m.Write([]byte("first\n")); err != nil {
		t.Fatalf("first Write: %v", err)
	}
	took := time.Since(start)
	if !standby.WaitLines(1, 10*time.Second) {
		t.Fatal("the first line did not reach the standby")
	}
	// The standby is dialed after the stagger (250 ms); a loopback dial
	// takes well under a millisecond, but -race on two busy cores may
	// stretch it: the bound is far below the 10 s dial timeout.
	if took < conn.DefaultDialStagger || took > conn.DefaultDialStagger+750*time.Millisecond {
		t.Errorf("the first Write took %v, want the stagger (%v) plus the dial time", took, conn.DefaultDialStagger)
	}
	if st := m.Stats(); st.Endpoint != standby.Addr() || st.DialFailures != 0 {
		t.Errorf("Stats() = %+v, want connected to the standby after one round", st)
	}
	t.Logf("first Write landed on the standby %v after New", took.Round(time.Millisecond))
}

// Write allocates nothing with rotations due all the time. AllocsPerRun
// counts the whole process's allocations, a rotation's own (a dial, a
// goroutine) among them, and reports 1 once they reach one per Write: with
// a 1 ms maximum age, Writes slowed by a loaded machine (linux/386 in CI)
// crossed that line now and then. At 10 ms they would have to take about
// 200 µs each.
func TestWriteWithSeveralEndpointsAllocatesNothing(t *testing.T) {
	const maxAge = 10 * time.Millisecond
	a, b := testnet.NewUDPSink(t), testnet.NewSink(t, "tcp")
	for _, m := range []*conn.Manager{
		conn.New("udp", a.Addr(), conn.WithEndpoints("127.0.0.1:9"), conn.WithMaxConnectionAge(maxAge)),
		conn.New("tcp", b.Addr(), conn.WithEndpoints("127.0.0.1:9"), conn.WithMaxConnectionAge(maxAge)),
	} {
		defer m.Close()
		msg := []byte("x\n")
		if _, err := m.Write(msg); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(1000, func() { m.Write(msg) }); n != 0 {
			t.Errorf("Write on %s with rotations every %v allocates %v times", m.Stats().Endpoint, maxAge, n)
		}
	}
}
