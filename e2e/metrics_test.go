//go:build unix

package e2e

// The README's go-kit metrics recipe: go-kit's graphite and dogstatsd
// emitters writing through a conn BatchWriter (or a bare Manager) with
// their WriteLoop. Not SendLoop: it builds go-kit's own util/conn Manager
// inside, so changing an import does not reach it.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/go-kit/kit/metrics/dogstatsd"
	"github.com/go-kit/kit/metrics/graphite"
	"github.com/go-kit/log"

	"github.com/seed44b27a20/conn"
)

// readLines is a collector: it accepts one connection on ln and returns,
// on the channel, every line received until the client closes.
func readLines(ln net.Listener) <-chan []string {
	received := make(chan []string, 1)
	go func() {
		var lines []string
		defer func() { received <- lines }()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		s := bufio.NewScanner(c)
		for s.Scan() {
			lines = append(lines, s.Text())
		}
	}()
	return received
}

// go-kit's graphite emitter over a BatchWriter over a Manager: WriteTo
// queues each line and returns at once, and what is queued waits through
// a collector's restart instead of being lost with a failed Write.
func Example_graphite() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // the collector: carbon's plaintext port, 2003
	defer ln.Close()
	received := readLines(ln)

	m := conn.New("tcp", ln.Addr().String())
	w := conn.NewBatchWriter(m)
	g := graphite.New("myapp.", log.NewNopLogger())
	requests := g.NewCounter("requests")
	inflight := g.NewGauge("inflight")

	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time) // in a program: time.NewTicker(10 * time.Second).C
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.WriteLoop(ctx, ticks, w)
	}()

	requests.Add(3)
	inflight.Set(2)
	ticks <- time.Now() // a flush: WriteTo(w)

	// Shutting down: stop the loop, flush what was counted since the last
	// tick, then close the BatchWriter (it writes what is queued through
	// the Manager) before the Manager.
	cancel()
	<-done
	g.WriteTo(w)
	w.Close()
	m.Close()

	for _, line := range <-received {
		f := strings.Fields(line) // path value timestamp
		fmt.Println(f[0], f[1])
	}
	// Output:
	// myapp.requests 3.000000
	// myapp.inflight 2.000000
	// myapp.requests 0.000000
	// myapp.inflight 2.000000
}

// The same emitter over a bare Manager: each line is a Write of its own,
// and a Write that fails (no connection during a collector's restart)
// loses that interval, since WriteTo reset the counter before writing it.
func Example_graphiteManager() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	received := readLines(ln)

	m := conn.New("tcp", ln.Addr().String())
	// The emitter's logger gets "during=WriteTo err=..." for a failed flush.
	g := graphite.New("myapp.", log.NewNopLogger())
	g.NewCounter("requests").Add(5)

	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.WriteLoop(ctx, ticks, m)
	}()
	ticks <- time.Now()
	cancel()
	<-done
	m.Close()

	for _, line := range <-received {
		f := strings.Fields(line)
		fmt.Println(f[0], f[1])
	}
	// Output: myapp.requests 5.000000
}

// go-kit's dogstatsd emitter over UDP through a BatchWriter: the lines of a
// flush are coalesced into datagrams of up to 1432 bytes, each line whole,
// instead of one datagram per line.
func Example_dogstatsd() {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0") // the agent: 8125
	defer pc.Close()

	m := conn.New("udp", pc.LocalAddr().String())
	w := conn.NewBatchWriter(m)
	d := dogstatsd.New("myapp.", log.NewNopLogger(), "env", "prod")
	requests := d.NewCounter("requests", 1)
	latency := d.NewTiming("latency_ms", 1)

	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.WriteLoop(ctx, ticks, w)
	}()
	requests.Add(1)
	requests.Add(2)
	latency.Observe(12)
	latency.Observe(15)
	ticks <- time.Now()

	cancel()
	<-done
	d.WriteTo(w) // nothing new since the tick: writes nothing
	w.Close()
	m.Close()

	// Datagrams: how the lines were split among them depends on timing.
	var lines []string
	buf := make([]byte, 2048)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(lines) < 3 {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			fmt.Println(err)
			return
		}
		lines = append(lines, strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n")...)
	}
	sort.Strings(lines)
	for _, line := range lines {
		fmt.Println(line)
	}
	// Output:
	// myapp.latency_ms:12.000000|ms|#env:prod
	// myapp.latency_ms:15.000000|ms|#env:prod
	// myapp.requests:3.000000|c|#env:prod
}
