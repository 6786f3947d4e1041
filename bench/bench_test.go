package bench

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	kitconn "github.com/go-kit/kit/util/conn"
	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

// Package-level sinks keep results alive so that the compiler cannot drop
// the work that produced them, and memSink is the raw connection: written
// through an interface held in a package-level variable, its Write cannot
// be devirtualised or inlined away.
var (
	memSink   net.Conn = memConn{}
	connSink  net.Conn
	nSink     int
	timeSink  time.Time
	durSink   time.Duration
	rawConnPt atomic.Pointer[net.Conn]
	clockBase = time.Now()
)

func memDial(string, string) (net.Conn, error) { return memConn{}, nil }

func memDialContext(context.Context, string, string) (net.Conn, error) { return memConn{}, nil }

// newKitMem returns a go-kit Manager whose connection is a memConn. Its
// goroutine cannot be stopped and lives as long as the process.
func newKitMem(b *testing.B) *kitconn.Manager {
	m := kitconn.NewManager(memDial, "mem", "mem", time.After, log.NewNopLogger())
	if m.Take() == nil {
		b.Fatal("go-kit Manager has no connection")
	}
	return m
}

// newConnMem returns one of our Managers whose connection is a memConn.
func newConnMem(b *testing.B, opts ...conn.Option) *conn.Manager {
	opts = append([]conn.Option{conn.WithDialer(memDialContext)}, opts...)
	m := conn.New("mem", "mem", opts...)
	b.Cleanup(func() { m.Close() })
	if m.Take() == nil {
		b.Fatal("Manager has no connection")
	}
	return m
}

// BenchmarkTake: handing out the current connection.
func BenchmarkTake(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		rawConnPt.Store(&memSink)
		b.ReportAllocs()
		var c net.Conn
		for b.Loop() {
			c = *rawConnPt.Load()
		}
		connSink = c
	})
	b.Run("gokit", func(b *testing.B) {
		m := newKitMem(b)
		b.ReportAllocs()
		var c net.Conn
		for b.Loop() {
			c = m.Take()
		}
		connSink = c
	})
	b.Run("conn", func(b *testing.B) {
		m := newConnMem(b)
		b.ReportAllocs()
		var c net.Conn
		for b.Loop() {
			c = m.Take()
		}
		connSink = c
	})
}

// BenchmarkWriteMem: one Write of a 51-byte line on a connection whose
// Write costs nothing, so what is measured is the manager around it.
func BenchmarkWriteMem(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		benchWrite(b, memSink)
	})
	b.Run("gokit", func(b *testing.B) {
		benchWrite(b, newKitMem(b))
	})
	b.Run("conn", func(b *testing.B) {
		benchWrite(b, newConnMem(b))
	})
	b.Run("conn-notimeout", func(b *testing.B) {
		benchWrite(b, newConnMem(b, conn.WithWriteTimeout(0)))
	})
	// Two endpoints: the Manager may switch, and a memConn has no fence
	// (fence.go), so each Write counts itself in and out of its connection
	// (two atomic additions). A socket's Writes count nothing: see
	// BenchmarkWriteTCP's conn-endpoints.
	b.Run("conn-endpoints", func(b *testing.B) {
		benchWrite(b, newConnMem(b, conn.WithEndpoints("standby")))
	})
}

func benchWrite(b *testing.B, w io.Writer) {
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		k, err := w.Write(line)
		if err != nil {
			b.Fatal(err)
		}
		n += k
	}
	nSink = n
}

// BenchmarkTimeNow: one time.Now, the yardstick for "one clock read".
func BenchmarkTimeNow(b *testing.B) {
	b.ReportAllocs()
	var t time.Time
	for b.Loop() {
		t = time.Now()
	}
	timeSink = t
}

// BenchmarkTimeSince: time.Since on a time with a monotonic reading, which
// reads the monotonic clock only; it is the clock read conn's Write does.
func BenchmarkTimeSince(b *testing.B) {
	b.ReportAllocs()
	var d time.Duration
	for b.Loop() {
		d = time.Since(clockBase)
	}
	durSink = d
}

// BenchmarkWriteMemParallel: Writes on one in-memory connection from
// 8·GOMAXPROCS and 64·GOMAXPROCS goroutines at once. ns/op is wall time
// per Write over all goroutines, so throughput is its inverse.
func BenchmarkWriteMemParallel(b *testing.B) {
	for _, p := range []int{8, 64} {
		b.Run("p"+itoa(p), func(b *testing.B) {
			b.Run("raw", func(b *testing.B) {
				benchWriteParallel(b, p, memSink)
			})
			b.Run("gokit", func(b *testing.B) {
				benchWriteParallel(b, p, newKitMem(b))
			})
			b.Run("conn", func(b *testing.B) {
				benchWriteParallel(b, p, newConnMem(b))
			})
			b.Run("conn-endpoints", func(b *testing.B) {
				benchWriteParallel(b, p, newConnMem(b, conn.WithEndpoints("standby")))
			})
		})
	}
}

// BenchmarkWriteUDP: 51-byte datagrams to a loopback UDP socket that
// reads and discards. conn-resolving names its peer "localhost:port" and
// has a maximum age of 10 ms: every 10 ms the Manager's goroutine resolves
// the name again, off the hot path; Write must neither wait for it nor
// allocate.
func BenchmarkWriteUDP(b *testing.B) {
	for _, kind := range []string{"raw", "conn", "conn-resolving"} {
		b.Run(kind, func(b *testing.B) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() {
				buf := make([]byte, 2048)
				for {
					// Read, not ReadFrom: it allocates no address, so
					// that allocs/op counts the writer's.
					if _, err := pc.(*net.UDPConn).Read(buf); err != nil {
						return
					}
				}
			}()
			b.Cleanup(func() { pc.Close() })
			_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
			var w io.Writer
			switch kind {
			case "raw":
				c, err := net.Dial("udp", pc.LocalAddr().String())
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { c.Close() })
				w = c
			case "conn":
				m := conn.New("udp", pc.LocalAddr().String())
				b.Cleanup(func() { m.Close() })
				w = m
			case "conn-resolving":
				m := conn.New("udp", "localhost:"+port, conn.WithMaxConnectionAge(10*time.Millisecond))
				b.Cleanup(func() { m.Close() })
				w = m
			}
			writeUntil(b, w, 5*time.Second)
			benchWrite(b, w)
		})
	}
}

func benchWriteParallel(b *testing.B, parallelism int, w io.Writer) {
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := w.Write(line); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkWriteTCP: 51-byte lines on a loopback TCP connection to a server
// that reads and discards, from one goroutine (serial) and from
// 8·GOMAXPROCS goroutines (p8). conn runs with its default options: a 30 s
// write timeout and the liveness check, which a busy connection triggers
// only now and then. conn-endpoints has a standby endpoint too, so it may
// switch: its Writes count nothing, as a socket has a fence (fence.go).
func BenchmarkWriteTCP(b *testing.B) {
	modes := []struct {
		name        string
		parallelism int // 0: serial
	}{{"serial", 0}, {"p8", 8}}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			for _, kind := range []string{"raw", "gokit", "conn", "conn-endpoints"} {
				b.Run(kind, func(b *testing.B) {
					w := tcpWriter(b, kind)
					if mode.parallelism == 0 {
						benchWrite(b, w)
					} else {
						benchWriteParallel(b, mode.parallelism, w)
					}
				})
			}
		})
	}
}

// BenchmarkWriteTCPIdle: one Write on a loopback TCP connection that sat
// idle (not timed) for 300 µs or 2 ms before it. Before writing on a
// connection idle for 1 ms or more, conn checks, with one non-blocking
// system call, whether the peer has closed it: after 2 ms, conn−raw is what
// that check costs a Write after a pause, when caches are cold and a system
// call is slower than in a tight loop; after 300 µs there is no check, and
// conn−raw shows the noise. Each iteration lasts at least the pause,
// whatever ns/op says: run it with a fixed count (-benchtime=200x).
func BenchmarkWriteTCPIdle(b *testing.B) {
	gaps := []struct {
		name string
		d    time.Duration
	}{{"300us", 300 * time.Microsecond}, {"2ms", 2 * time.Millisecond}}
	for _, gap := range gaps {
		b.Run(gap.name, func(b *testing.B) {
			for _, kind := range []string{"raw", "gokit", "conn"} {
				b.Run(kind, func(b *testing.B) {
					w := tcpWriter(b, kind)
					b.ReportAllocs()
					for b.Loop() {
						b.StopTimer()
						time.Sleep(gap.d)
						b.StartTimer()
						if _, err := w.Write(line); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// tcpWriter returns a connected writer of the given kind (raw: a net.Conn;
// gokit, conn: a Manager) to a fresh discarding server, closed (go-kit's:
// its socket) when b ends.
func tcpWriter(b *testing.B, kind string) io.Writer {
	s := newServer(b, true, 1)
	var w io.Writer
	switch kind {
	case "raw":
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		w = c
	case "gokit":
		t := newTracker(1)
		b.Cleanup(t.closeAll)
		m := kitconn.NewManager(t.dial, "tcp", s.addr, time.After, log.NewNopLogger())
		writeUntil(b, m, 5*time.Second)
		w = m
	case "conn", "conn-endpoints":
		var opts []conn.Option
		if kind == "conn-endpoints" {
			opts = append(opts, conn.WithEndpoints(closedPort(b))) // a standby that is never needed
		}
		m := conn.New("tcp", s.addr, opts...)
		b.Cleanup(func() { m.Close() })
		writeUntil(b, m, 5*time.Second)
		w = m
	default:
		b.Fatalf("unknown kind %q", kind)
	}
	s.waitAccepted(b, 1, 5*time.Second)
	return w
}

// BenchmarkReconnect: how long after the peer listens again the first
// Write succeeds. Each iteration: the Manager is connected and has written
// (and conn's connection is older than its 10 ms proof age); the server
// stops, closing its connections; Writes go on, one per millisecond or so,
// until one fails, so the Manager has noticed; its immediate redial is
// refused and it is backing off; 50 ms later the server listens again on
// the same port; then Write is called in a loop (pausing about a
// millisecond between attempts) until one succeeds. ns/op is the time from
// that listen to that success, averaged over the iterations; the backoff
// jitter makes single iterations vary a lot, so use several. Both run with
// their default backoff: go-kit with time.After as its AfterFunc (its
// NewDefaultManager's), conn with default options.
//
// lost/op counts Writes that returned a nil error after the server had
// closed the connection: those lines were lost.
//
// One iteration takes about as long as the backoff, a second or more; run
// it with a small fixed count (-benchtime=5x).
func BenchmarkReconnect(b *testing.B) {
	b.Run("gokit", func(b *testing.B) {
		s := newServer(b, true, 1)
		t := newTracker(16)
		defer t.closeAll()
		m := kitconn.NewManager(t.dial, "tcp", s.addr, time.After, log.NewNopLogger())
		benchReconnect(b, s, m)
	})
	b.Run("conn", func(b *testing.B) {
		s := newServer(b, true, 1)
		m := conn.New("tcp", s.addr)
		defer m.Close()
		benchReconnect(b, s, m)
	})
}

const (
	reconnectSettle = 20 * time.Millisecond // connected this long before the server stops
	reconnectDown   = 50 * time.Millisecond // the server stays down this long after the loss was seen
)

func benchReconnect(b *testing.B, s *server, w io.Writer) {
	writeUntil(b, w, 5*time.Second)
	b.ReportAllocs()
	var total time.Duration
	lost, n := 0, 0
	for b.Loop() {
		n++
		time.Sleep(reconnectSettle)
		s.stop()
		for deadline := time.Now().Add(5 * time.Second); ; {
			if _, err := w.Write(line); err != nil {
				break
			}
			lost++
			if time.Now().After(deadline) {
				b.Fatal("Writes kept succeeding with the server stopped")
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(reconnectDown)
		if err := s.start(); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		writeUntil(b, w, 10*time.Second)
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(n), "ns/op")
	b.ReportMetric(float64(lost)/float64(n), "lost/op")
}

// footprintN is how many connected Managers BenchmarkIdleFootprint holds.
const footprintN = 1000

// BenchmarkIdleFootprint: the live heap, goroutine stacks and goroutines
// that footprintN idle connected Managers keep, per Manager, measured as
// the difference of runtime.MemStats (after two GCs) and
// runtime.NumGoroutine before and after. The server is in this process and
// holds the accepted connections without a goroutine; raw measures
// footprintN bare net.Conns the same way, so that gokit−raw and conn−raw
// are the managers' own cost. The heap includes what the runtime allocates
// for a goroutine (its descriptor, and the sudogs of the select it blocks
// in); stackB/mgr is the goroutine stacks, which are not heap. Each
// iteration brings up footprintN of them, measures and tears them down;
// go-kit's Managers cannot be closed, so only their sockets are, and their
// goroutines stay for the life of the process (they are already counted in
// the next iteration's "before").
//
// Take one sample per process: run it with -benchtime=1x -count=1, as
// bench/run does. Within one process the runtime reuses the descriptors of
// goroutines that have ended, so a second round of conn Managers (whose
// predecessors were closed) does not allocate them and shows about 0.5 KiB
// less per Manager than a first round; go-kit's goroutines never end, so
// its rounds all pay in full. ns/op is the time to bring up footprintN.
func BenchmarkIdleFootprint(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		footprint(b, func(s *server) (func(), func()) {
			cs := make([]net.Conn, 0, footprintN)
			return func() {
					for range footprintN {
						c, err := net.Dial("tcp", s.addr)
						if err != nil {
							b.Fatal(err)
						}
						cs = append(cs, c)
					}
				}, func() {
					for _, c := range cs {
						c.Close()
					}
				}
		})
	})
	b.Run("gokit", func(b *testing.B) {
		footprint(b, func(s *server) (func(), func()) {
			t := newTracker(footprintN)
			ms := make([]*kitconn.Manager, 0, footprintN)
			return func() {
					for range footprintN {
						ms = append(ms, kitconn.NewManager(t.dial, "tcp", s.addr, time.After, log.NewNopLogger()))
					}
					for _, m := range ms {
						if m.Take() == nil {
							b.Fatal("go-kit Manager did not connect")
						}
					}
				}, func() {
					t.closeAll()
					runtime.KeepAlive(ms)
				}
		})
	})
	b.Run("conn", func(b *testing.B) {
		footprint(b, func(s *server) (func(), func()) {
			ms := make([]*conn.Manager, 0, footprintN)
			return func() {
					for range footprintN {
						ms = append(ms, conn.New("tcp", s.addr))
					}
					for _, m := range ms {
						awaitConnected(b, m)
					}
				}, func() {
					for _, m := range ms {
						m.Close()
					}
				}
		})
	})
}

// footprint runs rounds of: prepare (allocations made before the first
// reading), up (bring up footprintN connections), a second reading, down.
func footprint(b *testing.B, prepare func(*server) (up, down func())) {
	b.ReportAllocs()
	var heap, stack, gor float64
	n := 0
	for b.Loop() {
		n++
		b.StopTimer()
		s := newServer(b, false, footprintN)
		up, down := prepare(s)
		before, g0 := settled()
		b.StartTimer()
		up()
		s.waitAccepted(b, footprintN, 10*time.Second)
		b.StopTimer()
		after, g1 := settled()
		heap += float64(int64(after.HeapAlloc) - int64(before.HeapAlloc))
		stack += float64(int64(after.StackInuse) - int64(before.StackInuse))
		gor += float64(g1 - g0)
		down()
		s.close()
		b.StartTimer()
	}
	per := float64(n) * footprintN
	b.ReportMetric(heap/per, "heapB/mgr")
	b.ReportMetric(stack/per, "stackB/mgr")
	b.ReportMetric(gor/per, "goroutines/mgr")
}

// settled returns the memory statistics and goroutine count once garbage
// is collected and goroutines that are ending have ended.
func settled() (runtime.MemStats, int) {
	var ms runtime.MemStats
	g := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(2 * time.Millisecond)
		g2 := runtime.NumGoroutine()
		if g2 == g {
			break
		}
		g = g2
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms, runtime.NumGoroutine()
}

// awaitConnected waits until m is connected.
func awaitConnected(b *testing.B, m *conn.Manager) {
	for deadline := time.Now().Add(10 * time.Second); m.Stats().State != conn.Connected; {
		if time.Now().After(deadline) {
			b.Fatalf("Manager did not connect: %+v", m.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for ; n > 0; n /= 10 {
		i--
		buf[i] = byte('0' + n%10)
	}
	return string(buf[i:])
}
