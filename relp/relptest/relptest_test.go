package relptest_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
	"github.com/seed44b27a20/conn/relp/internal/frame"
	"github.com/seed44b27a20/conn/relp/relptest"
)

const wait = 10 * time.Second // bound of every wait; never reached when all is well

// client is a raw RELP client: frames written by hand, answers read one
// by one.
type client struct {
	t  *testing.T
	c  net.Conn
	fr *frame.Reader
}

func dial(t *testing.T, s *relptest.Server) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr(), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(wait))
	return &client{t: t, c: c, fr: frame.NewReader(bufio.NewReader(c), 1<<20)}
}

func (c *client) send(txnr uint32, cmd, data string) {
	c.t.Helper()
	if _, err := c.c.Write(frame.Append(nil, txnr, cmd, []byte(data))); err != nil {
		c.t.Fatal(err)
	}
}

// next reads a frame as "TXNR CMD DATA".
func (c *client) next() (string, error) {
	f, err := c.fr.Read()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %s %s", f.Txnr, f.Cmd, f.Data), nil
}

func (c *client) expect(want string) {
	c.t.Helper()
	got, err := c.next()
	if err != nil || got != want {
		c.t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

func (c *client) open() {
	c.t.Helper()
	c.send(1, "open", "relp_version=0\ncommands=syslog")
	c.expect("1 rsp " + relptest.DefaultOpenAnswer)
}

func TestSession(t *testing.T) {
	s := relptest.NewServer(t)
	c := dial(t, s)
	c.open()
	c.send(2, "syslog", "one")
	c.send(3, "syslog", "")
	c.expect("2 rsp 200 OK")
	c.expect("3 rsp 200 OK")
	c.send(4, "close", "")
	c.expect("4 rsp ")
	if _, err := c.next(); err != io.EOF {
		t.Errorf("after close: %v, want EOF", err)
	}
	c2 := dial(t, s)
	c2.open()
	c2.send(2, "syslog", "three")
	c2.expect("2 rsp 200 OK")
	if err := s.Wait(wait, func(st relptest.Stats) bool { return st.Closes == 1 && st.Opens == 2 && st.Messages == 3 }); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%q %q %q", s.Messages(), s.ConnMessages(0), s.ConnMessages(1)); got != `["one" "" "three"] ["one" ""] ["three"]` {
		t.Errorf("messages %s", got)
	}
	if st := s.Stats(); st.Conns != 2 || len(st.Errors) != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestAnswer(t *testing.T) {
	s := relptest.NewServer(t, relptest.WithAnswer(func(m []byte) (int, string) {
		if string(m) == "bad" {
			return 500, "no thanks"
		}
		return 200, "OK"
	}))
	c := dial(t, s)
	c.open()
	c.send(2, "syslog", "bad")
	c.send(3, "syslog", "good")
	c.expect("2 rsp 500 no thanks")
	c.expect("3 rsp 200 OK")
	if st := s.Stats(); st.Refused != 1 || st.Messages != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestOpenAnswerWithClient(t *testing.T) {
	for _, c := range []struct{ answer, want string }{
		{relptest.DefaultOpenAnswer, ""},
		{"500 go away", `500 "go away"`},
		{"200 OK\nrelp_version=0\ncommands=eventlog", "does not offer the syslog command"},
	} {
		s := relptest.NewServer(t, relptest.WithOpenAnswer(c.answer))
		nc, err := net.DialTimeout("tcp", s.Addr(), wait)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(wait))
		_, err = relp.New().Open(nc)
		nc.Close()
		if c.want == "" && err != nil || c.want != "" && (!errors.Is(err, conn.ErrAckRefused) || !strings.Contains(fmt.Sprint(err), c.want)) {
			t.Errorf("open answered %q: %v, want %q", c.answer, err, c.want)
		}
		s.Close()
	}
}

// The relp client against the server: batches, answers, close → EOF.
func TestWithClient(t *testing.T) {
	s := relptest.NewServer(t)
	nc, err := net.DialTimeout("tcp", s.Addr(), wait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(wait))
	sess, err := relp.New().Open(nc)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for i := 0; i < 10; i++ {
		batch := make([][]byte, 50)
		for j := range batch {
			batch[j] = fmt.Appendf(nil, "msg %d\n", i*50+j)
		}
		out = sess.AppendBatch(out, uint64(i*50), batch)
	}
	out = sess.AppendClose(out)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	var through uint64
	for {
		a, err := sess.ReadAck()
		if err == io.EOF {
			break
		}
		if err != nil || a.Err != nil {
			t.Fatalf("ReadAck: %+v, %v", a, err)
		}
		through = a.Through
	}
	if through != 500 {
		t.Errorf("acknowledged through %d, want 500", through)
	}
	if m := s.Messages(); len(m) != 500 || m[499] != "msg 499" {
		t.Errorf("%d messages, last %q", len(m), m[len(m)-1])
	}
}

func TestServerClose(t *testing.T) {
	s := relptest.NewServer(t)
	c := dial(t, s)
	c.open()
	s.ServerClose()
	c.expect("0 serverclose ")
	if _, err := c.next(); err != io.EOF {
		t.Errorf("after serverclose: %v, want EOF", err)
	}
	dial(t, s).open() // still serving
}

func TestReset(t *testing.T) {
	s := relptest.NewServer(t)
	c := dial(t, s)
	c.open()
	s.Reset()
	_, err := c.next()
	if err == nil || err == io.EOF || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("after Reset: %v, want a reset", err)
	}
	dial(t, s).open()
}

func TestStall(t *testing.T) {
	s := relptest.NewServer(t)
	c := dial(t, s)
	c.open()
	c.send(2, "syslog", "before")
	c.expect("2 rsp 200 OK")
	s.Stall()
	c.send(3, "syslog", "held")
	c.send(4, "close", "")
	if err := s.Wait(wait, func(st relptest.Stats) bool { return st.Messages == 2 && st.Closes == 1 }); err != nil {
		t.Fatal(err)
	}
	c.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) // nothing may come
	if got, err := c.next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled, read %q, %v", got, err)
	}
	c2 := dial(t, s) // opens are answered while stalled
	c2.open()
	c.c.SetReadDeadline(time.Now().Add(wait))
	c.fr = frame.NewReader(bufio.NewReader(c.c), 1<<20) // the timed out one may hold a partial state
	s.Release()
	c.expect("3 rsp 200 OK")
	c.expect("4 rsp ")
	if _, err := c.next(); err != io.EOF {
		t.Errorf("after the held close: %v, want EOF", err)
	}
}

func TestCloseAfter(t *testing.T) {
	s := relptest.NewServer(t)
	c := dial(t, s)
	c.open()
	c.send(2, "syslog", "a")
	c.expect("2 rsp 200 OK")
	s.CloseAfter(2)
	c.send(3, "syslog", "b")
	c.send(4, "syslog", "c")
	if _, err := c.next(); err != io.EOF {
		t.Errorf("after CloseAfter: %v, want EOF, nothing answered", err)
	}
	if m := s.Messages(); fmt.Sprint(m) != "[a b c]" {
		t.Errorf("messages %q", m)
	}
	c2 := dial(t, s) // once only
	c2.open()
	c2.send(2, "syslog", "d")
	c2.expect("2 rsp 200 OK")
}

func TestBadInput(t *testing.T) {
	for _, in := range []string{
		"GET / HTTP/1.1\r\n\r\n",
		"2 open 0\n",                   // txnr must start at 1
		"1 syslog 1 x\n",               // before open
		"1 open 0\n1 open 0\n",         // txnr 2 expected... and a second open
		"1 open 0\n2 frob 0\n",         // unknown command
		"1 open 999999999 ",            // above the bound
		"1 " + strings.Repeat("o", 40), // command too long
		"1 open 4 ab\x00cd\n",          // data not ended by LF
	} {
		s := relptest.NewServer(t)
		c := dial(t, s)
		if _, err := io.WriteString(c.c, in); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := c.next(); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("%q: the connection stays open", in)
				}
				break
			}
		}
		if err := s.Wait(wait, func(st relptest.Stats) bool { return len(st.Errors) == 1 }); err != nil {
			t.Errorf("%q: %v", in, err)
		}
		s.Close()
	}
}

func TestCloseWithClients(t *testing.T) {
	s := relptest.NewServer(nil)
	c := dial(t, s)
	c.open()
	s.Stall()
	c.send(2, "syslog", "x")
	if err := s.WaitMessages(1, wait); err != nil {
		t.Fatal(err)
	}
	s.Close() // ends every goroutine (goleak checks), with a stalled connection
	s.Close()
	if _, err := c.next(); err != io.EOF && !errors.Is(err, net.ErrClosed) && err == nil {
		t.Errorf("after Close: %v", err)
	}
}
