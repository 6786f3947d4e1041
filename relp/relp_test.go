package relp_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
)

const okOpen = "1 rsp 41 200 OK\nrelp_version=0\ncommands=syslog,foo\n"

// fakeRW is a server's side given in advance: reads come from in, writes
// go to out.
type fakeRW struct {
	in  io.Reader
	out bytes.Buffer
}

func (f *fakeRW) Read(p []byte) (int, error)  { return f.in.Read(p) }
func (f *fakeRW) Write(p []byte) (int, error) { return f.out.Write(p) }

// open opens a session whose server answers open with okOpen and then
// sends server.
func open(t testing.TB, server string) (conn.AckSession, *fakeRW) {
	t.Helper()
	rw := &fakeRW{in: strings.NewReader(okOpen + server)}
	s, err := relp.New().Open(rw)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	rw.out.Reset()
	return s, rw
}

func msgs(ss ...string) [][]byte {
	m := make([][]byte, len(ss))
	for i, s := range ss {
		m[i] = []byte(s)
	}
	return m
}

func TestOpenSends(t *testing.T) {
	rw := &fakeRW{in: strings.NewReader(okOpen)}
	if _, err := relp.New(relp.WithSoftware("me,1.0\n,x")).Open(rw); err != nil {
		t.Fatal(err)
	}
	want := "1 open 53 relp_version=0\nrelp_software=me,1.0,x\ncommands=syslog\n"
	if got := rw.out.String(); got != want {
		t.Errorf("open sent %q, want %q", got, want)
	}
	rw = &fakeRW{in: strings.NewReader(okOpen)}
	if _, err := relp.New(relp.WithSoftware("")).Open(rw); err != nil {
		t.Fatal(err)
	}
	if want := "1 open 30 relp_version=0\ncommands=syslog\n"; rw.out.String() != want {
		t.Errorf("open without software sent %q, want %q", rw.out.String(), want)
	}
}

// WithSoftware drops LF and the other control bytes (below SP, and DEL)
// and keeps everything else, SP included.
func TestWithSoftwareKeepsSpaces(t *testing.T) {
	rw := &fakeRW{in: strings.NewReader(okOpen)}
	if _, err := relp.New(relp.WithSoftware(" my app,1.0\t\x7f\x00,x y~ ")).Open(rw); err != nil {
		t.Fatal(err)
	}
	offers := "relp_version=0\nrelp_software= my app,1.0,x y~ \ncommands=syslog"
	if want := fmt.Sprintf("1 open %d %s\n", len(offers), offers); rw.out.String() != want {
		t.Errorf("open sent %q, want %q", rw.out.String(), want)
	}
}

func TestOpenAnswers(t *testing.T) {
	frame := func(data string) string { return fmt.Sprintf("1 rsp %d %s\n", len(data), data) }
	for _, c := range []struct {
		name, in string
		want     error // nil: the session opens
	}{
		{"librelp's", frame("200 OK\nrelp_version=0\nrelp_software=librelp,1.13.0,http://librelp.adiscon.com\ncommands=syslog"), nil},
		{"no relp_version", frame("200 OK\ncommands=syslog"), nil},
		{"refused", frame("500 required command not supported by client"), conn.ErrAckRefused},
		{"no syslog", frame("200 OK\nrelp_version=0\ncommands=eventlog"), conn.ErrAckRefused},
		{"no offers", frame("200 OK"), conn.ErrAckRefused},
		{"newer version", frame("200 OK\nrelp_version=1\ncommands=syslog"), conn.ErrAckRefused},
		{"bad version", frame("200 OK\nrelp_version=x\ncommands=syslog"), relp.ErrProtocol},
		{"no code", frame("OK"), relp.ErrProtocol},
		{"wrong txnr", "2 rsp 6 200 OK\n", relp.ErrProtocol},
		{"not rsp", "1 syslog 6 200 OK\n", relp.ErrProtocol},
		{"garbage", "HTTP/1.1 400 Bad Request\r\n", relp.ErrProtocol},
		{"serverclose", "0 serverclose 0\n", relp.ErrServerClose},
		{"closed", "", io.ErrUnexpectedEOF},
		{"cut", "1 rsp 20 200 OK", io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := relp.New().Open(&fakeRW{in: strings.NewReader(c.in)})
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("Open: %v, want %v", err, c.want)
			}
		})
	}
	_, err := relp.New().Open(&fakeRW{in: strings.NewReader(frame("503 busy, try later"))})
	var re *relp.RefusedError
	if !errors.As(err, &re) || re.Code != 503 || re.Text != "busy, try later" || !strings.Contains(err.Error(), `503 "busy, try later"`) {
		t.Errorf("refused open: %v, want a RefusedError quoting 503 and the text", err)
	}
}

// librelp's server answers open with its offers in its own order and may
// add offers this client does not know; neither may refuse the session.
func TestOpenOffers(t *testing.T) {
	for _, data := range []string{
		"200 OK\ncommands=syslog\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\nrelp_version=0",
		"200 OK\nrelp_software=x\nfoo=bar\ncommands=eventlog,syslog\nrelp_version=0\nzzz",
		"200 OK\nrelp_version=0\ncommands=syslog\n",
		"200 OK\ncommands=syslog",
	} {
		frame := fmt.Sprintf("1 rsp %d %s\n", len(data), data)
		if _, err := relp.New().Open(&fakeRW{in: strings.NewReader(frame)}); err != nil {
			t.Errorf("open answered %q: %v", data, err)
		}
	}
	for _, data := range []string{"200 OK\nrelp_version=1\ncommands=syslog", "200 OK\ncommands=syslogx", "500 busy"} {
		frame := fmt.Sprintf("1 rsp %d %s\n", len(data), data)
		if _, err := relp.New().Open(&fakeRW{in: strings.NewReader(frame)}); !errors.Is(err, conn.ErrAckRefused) {
			t.Errorf("open answered %q: %v, want a refusal", data, err)
		}
	}
}

func TestAppendBatchFraming(t *testing.T) {
	s, _ := open(t, "")
	big := strings.Repeat("x", 200<<10)
	got := string(s.AppendBatch([]byte("kept"), 0, msgs("", "a\n", "b\n\n", "c\r\n", "<13>hello", big, "\n")))
	want := "kept" + "2 syslog 0\n" + "3 syslog 1 a\n" + "4 syslog 2 b\n\n" + "5 syslog 2 c\r\n" +
		"6 syslog 9 <13>hello\n" + "7 syslog 204800 " + big + "\n" + "8 syslog 0\n"
	if got != want {
		t.Errorf("AppendBatch: got %.80q..., want %.80q...", got, want)
	}
	if got := string(s.AppendBatch(nil, 7, msgs("next"))); got != "9 syslog 4 next\n" {
		t.Errorf("second batch: %q", got)
	}
	if got := string(s.AppendClose(nil)); got != "10 close 0\n" {
		t.Errorf("AppendClose: %q", got)
	}
}

// acks reads every Ack until an error.
func acks(s conn.AckSession) ([]conn.Ack, error) {
	var as []conn.Ack
	for i := 0; i < 1000; i++ {
		a, err := s.ReadAck()
		if err != nil {
			return as, err
		}
		as = append(as, a)
	}
	return as, errors.New("ReadAck does not end")
}

func TestTxnrWrap(t *testing.T) {
	s, _ := open(t, "1 rsp 6 200 OK\n999999998 rsp 6 200 OK\n999999999 rsp 6 200 OK\n2 rsp 0\n")
	relp.SetNextTxnr(s, 999_999_998)
	got := string(s.AppendBatch(nil, 10, msgs("a", "b", "c")))
	if want := "999999998 syslog 1 a\n999999999 syslog 1 b\n1 syslog 1 c\n"; got != want {
		t.Errorf("wrap: %q, want %q", got, want)
	}
	s.AppendClose(nil)
	as, err := acks(s)
	// 1 answered first: nothing reported until 999999998 and 999999999 are.
	if err != io.EOF || len(as) != 1 || as[0] != (conn.Ack{Through: 13}) {
		t.Errorf("acks %v, %v; want [{13}], EOF", as, err)
	}
}

func rsp(txnr int, data string) string {
	if data == "" {
		return fmt.Sprintf("%d rsp 0\n", txnr)
	}
	return fmt.Sprintf("%d rsp %d %s\n", txnr, len(data), data)
}

// slowReader returns one byte per Read, so that each frame is read alone.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 1)]) }

func TestReadAck(t *testing.T) {
	refused := func(code int, text string) error { return &relp.RefusedError{Code: code, Text: text} }
	for _, c := range []struct {
		name    string
		n       int // messages sent, numbered from 100, txnrs from 2
		close   bool
		server  string
		want    []conn.Ack
		wantErr error
	}{
		{"in order", 3, true, rsp(2, "200 OK") + rsp(3, "200 OK") + rsp(4, "200 OK") + rsp(5, ""),
			[]conn.Ack{{Through: 101}, {Through: 102}, {Through: 103}}, io.EOF},
		{"out of order", 4, false, rsp(3, "200 OK") + rsp(5, "200 OK") + rsp(2, "200 OK") + rsp(4, "200 OK"),
			[]conn.Ack{{Through: 102}, {Through: 104}}, io.EOF},
		{"refusals", 5, false, rsp(2, "200 OK") + rsp(3, "500 no") + rsp(4, "501 nope\nmore") + rsp(5, "200 OK") + rsp(6, "200"),
			[]conn.Ack{{Through: 101}, {Through: 102, Err: refused(500, "no")}, {Through: 103, Err: refused(501, "nope")}, {Through: 105}}, io.EOF},
		{"refusal out of order", 3, false, rsp(4, "200 OK") + rsp(3, "500 no") + rsp(2, "200 OK"),
			[]conn.Ack{{Through: 101}, {Through: 102, Err: refused(500, "no")}, {Through: 103}}, io.EOF},
		{"serverclose", 2, false, rsp(2, "200 OK") + "0 serverclose 0\n" + rsp(3, "200 OK"),
			[]conn.Ack{{Through: 101}}, relp.ErrServerClose},
		{"close before answers", 2, true, rsp(2, "200 OK") + rsp(4, ""),
			[]conn.Ack{{Through: 101}}, io.EOF},
		{"close answered 200", 1, true, rsp(2, "200 OK") + rsp(3, "200 OK"),
			[]conn.Ack{{Through: 101}}, io.EOF},
		{"not outstanding", 2, false, rsp(2, "200 OK") + rsp(9, "200 OK"), []conn.Ack{{Through: 101}}, relp.ErrProtocol},
		// Read one frame at a time (slow), 2's Ack is reported before 6
		// arrives: 6 is one past the last sent, counted from the first
		// still outstanding.
		{"one past the last sent", 4, false, rsp(2, "200 OK") + rsp(6, "200 OK"), []conn.Ack{{Through: 101}}, relp.ErrProtocol},
		{"answered twice", 2, false, rsp(2, "200 OK") + rsp(2, "200 OK"), []conn.Ack{{Through: 101}}, relp.ErrProtocol},
		{"txnr 0 rsp", 1, false, rsp(0, "200 OK"), nil, relp.ErrProtocol},
		{"open answered again", 1, false, rsp(1, "200 OK"), nil, relp.ErrProtocol},
		{"rsp without code", 1, false, rsp(2, ""), nil, relp.ErrProtocol},
		{"close not sent", 1, false, rsp(2, "200 OK") + rsp(3, ""), []conn.Ack{{Through: 101}}, relp.ErrProtocol},
		{"bad code", 1, false, rsp(2, "2x0 OK"), nil, relp.ErrProtocol},
		{"code without SP", 1, false, rsp(2, "2000"), nil, relp.ErrProtocol},
		{"code and LF", 1, false, rsp(2, "200\nmore"), []conn.Ack{{Through: 101}}, io.EOF},
		{"2xx other than 200", 1, false, rsp(2, "201 fine?"), []conn.Ack{{Through: 101, Err: refused(201, "fine?")}}, io.EOF},
		{"code with a middle digit", 1, false, rsp(2, "210 fine?"), []conn.Ack{{Through: 101, Err: refused(210, "fine?")}}, io.EOF},
		{"code with nines", 1, false, rsp(2, "599 later"), []conn.Ack{{Through: 101, Err: refused(599, "later")}}, io.EOF},
		{"code 999", 1, false, rsp(2, "999"), []conn.Ack{{Through: 101, Err: refused(999, "")}}, io.EOF},
		{"long text", 1, false, rsp(2, "500 "+strings.Repeat("t", 100)), []conn.Ack{{Through: 101, Err: refused(500, strings.Repeat("t", 80))}}, io.EOF},
		{"syslog from server", 1, false, "2 syslog 2 hi\n", nil, relp.ErrProtocol},
		{"hint with txnr", 1, false, "2 serverclose 0\n", nil, relp.ErrProtocol},
		{"long txnr", 1, false, "0000000002 rsp 6 200 OK\n", nil, relp.ErrProtocol},
		{"long command", 1, false, "2 " + strings.Repeat("r", 33) + " 0\n", nil, relp.ErrProtocol},
		{"long datalen", 1, false, "2 rsp 0000000006 200 OK\n", nil, relp.ErrProtocol},
		{"huge datalen", 1, false, "2 rsp 999999999 ", nil, relp.ErrProtocol},
		{"above MaxResponse", 1, false, fmt.Sprintf("2 rsp %d ", relp.MaxResponse+1), nil, relp.ErrProtocol},
		{"no trailer", 1, false, "2 rsp 6 200 OKX", nil, relp.ErrProtocol},
		{"SP after 0", 1, false, "2 rsp 0 \n", nil, relp.ErrProtocol},
		{"no SP before data", 1, false, "2 rsp 6\n200 OK\n", nil, relp.ErrProtocol},
		{"empty command", 1, false, "2  6 200 OK\n", nil, relp.ErrProtocol},
		{"CRLF", 1, false, "2 rsp 6 200 OK\r\n", nil, relp.ErrProtocol},
		{"cut", 1, false, "2 rsp 6 200", nil, io.ErrUnexpectedEOF},
		{"cut in header", 1, false, "2 rs", nil, io.ErrUnexpectedEOF},
	} {
		for _, slow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/slow=%v", c.name, slow), func(t *testing.T) {
				var in io.Reader = strings.NewReader(okOpen + c.server)
				if slow {
					in = slowReader{in}
				}
				s, err := relp.New().Open(&fakeRW{in: in})
				if err != nil {
					t.Fatal(err)
				}
				batch := make([]string, c.n)
				for i := range batch {
					batch[i] = fmt.Sprint("m", i)
				}
				s.AppendBatch(nil, 100, msgs(batch...))
				if c.close {
					s.AppendClose(nil)
				}
				as, err := acks(s)
				if fmt.Sprint(collapse(t, as)) != fmt.Sprint(collapse(t, c.want)) || !errors.Is(err, c.wantErr) {
					t.Errorf("got %v, %v; want %v, %v", as, err, c.want, c.wantErr)
				}
				if err2 := func() error { _, err := s.ReadAck(); return err }(); err2 != err {
					t.Errorf("ReadAck after the error: %v, want %v again", err2, err)
				}
				if errors.Is(err, relp.ErrProtocol) && !strings.Contains(err.Error(), "\"") {
					t.Errorf("a protocol error quotes nothing: %v", err)
				}
			})
		}
	}
}

// collapse checks Through grows, and keeps of consecutive Acks without
// Err only the last: how answers group into Acks depends on how they
// arrive.
func collapse(t *testing.T, as []conn.Ack) []conn.Ack {
	t.Helper()
	var out []conn.Ack
	for i, a := range as {
		if i > 0 && a.Through <= as[i-1].Through {
			t.Errorf("Through does not grow: %v", as)
		}
		if n := len(out); n > 0 && out[n-1].Err == nil && a.Err == nil {
			out[n-1] = a
			continue
		}
		out = append(out, a)
	}
	return out
}

// chunks returns its pieces one per Read (a Read never spans two).
type chunks struct{ pieces []string }

func (c *chunks) Read(p []byte) (int, error) {
	for len(c.pieces) > 0 && c.pieces[0] == "" {
		c.pieces = c.pieces[1:]
	}
	if len(c.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.pieces[0])
	c.pieces[0] = c.pieces[0][n:]
	return n, nil
}

type session struct {
	as  []conn.Ack
	err error
}

// run opens a session over the pieces, sends n messages numbered from 100
// (txnrs from next, unless 0) and optionally a close, and reads every Ack.
func run(t *testing.T, pieces []string, next uint32, n int, close bool) session {
	t.Helper()
	s, err := relp.New().Open(&fakeRW{in: &chunks{pieces: pieces}})
	if err != nil {
		return session{err: fmt.Errorf("Open: %w", err)}
	}
	if next != 0 {
		relp.SetNextTxnr(s, next)
	}
	batch := make([]string, n)
	for i := range batch {
		batch[i] = fmt.Sprint("m", i)
	}
	s.AppendBatch(nil, 100, msgs(batch...))
	if close {
		s.AppendClose(nil)
	}
	as, err := acks(s)
	return session{as: collapse(t, as), err: err}
}

// String is the Acks and the kind of the error: a protocol error quotes
// what was buffered, which depends on the reads.
func (s session) String() string {
	err := fmt.Sprint(s.err)
	if errors.Is(s.err, relp.ErrProtocol) {
		err = "protocol error"
	}
	return fmt.Sprint(s.as, " ", err)
}

// Every split of the server's bytes in two and in three reads the same
// Acks and ends the same way as the bytes in one read: rsps with extra
// lines, DATALEN with leading zeros, a refusal, out-of-order answers
// across the txnr wrap, and a serverclose in the same read as acks.
func TestReadAckEverySplit(t *testing.T) {
	for _, c := range []struct {
		name   string
		server string
		next   uint32
		n      int
		close  bool
		want   string
	}{
		{"extra lines and zeros", okOpen + rsp(2, "200 OK\nextra\nlines\n") + "3 rsp 006 200 OK\n" + rsp(4, "500 no\nwhy\n") +
			"5 rsp 00 \n", 0, 4, false, ""},
		{"wrap out of order", okOpen + rsp(1, "200 OK") + rsp(999_999_999, "500 no") + rsp(999_999_998, "200 OK") + rsp(2, "200 OK") + rsp(3, ""),
			999_999_998, 4, true, "[{101 <nil>} {102 relp: refused by the server: 500 \"no\"} {104 <nil>}] EOF"},
		{"serverclose with acks", okOpen + rsp(2, "200 OK") + rsp(3, "200 OK") + "0 serverclose 0\n", 0, 3, false,
			"[{102 <nil>}] relp: the server closes the session (serverclose)"},
		{"crlf open", strings.ReplaceAll(okOpen, "\n", "\r\n"), 0, 1, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			whole := run(t, []string{c.server}, c.next, c.n, c.close)
			got := whole.String()
			t.Logf("whole: %s", got)
			if c.want != "" && got != c.want {
				t.Errorf("whole: %s, want %s", got, c.want)
			}
			b := c.server
			for i := 0; i <= len(b); i++ {
				if r := run(t, []string{b[:i], b[i:]}, c.next, c.n, c.close); r.String() != got {
					t.Fatalf("split at %d (%q | %q): %v %v, whole %s", i, b[:i], b[i:], r.as, r.err, got)
				}
				for j := i; j <= len(b); j++ {
					if r := run(t, []string{b[:i], b[i:j], b[j:]}, c.next, c.n, c.close); r.String() != got {
						t.Fatalf("split at %d and %d: %v %v, whole %s", i, j, r.as, r.err, got)
					}
				}
			}
		})
	}
}

func TestRefusalMatches(t *testing.T) {
	s, _ := open(t, rsp(2, "500 queue full"))
	s.AppendBatch(nil, 0, msgs("x"))
	a, err := s.ReadAck()
	if err != nil || a.Through != 1 || !errors.Is(a.Err, conn.ErrAckRefused) || !strings.Contains(a.Err.Error(), `500 "queue full"`) {
		t.Errorf("ReadAck: %+v, %v; want Through 1, a refusal quoting 500 and the text", a, err)
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	s, _ := open(b, "")
	batch := make([][]byte, 128)
	for i := range batch {
		batch[i] = []byte(strings.Repeat("x", 99) + "\n")
	}
	dst := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	b.SetBytes(int64(len(batch) * 100))
	for i := 0; b.Loop(); i++ {
		dst = s.AppendBatch(dst[:0], uint64(i*len(batch)), batch)
		if i%4 == 0 { // as the writer would, now and then: keep the queue bounded
			relp.Drain(s)
		}
	}
}

// A session that always has a message outstanding (a steady stream, the
// window never empty) keeps its queue of outstanding messages small.
func TestOutstandingQueueStaysSmall(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	go pw.Write([]byte(okOpen))
	s, err := relp.New().Open(&fakeRW{in: pr})
	if err != nil {
		t.Fatal(err)
	}
	answers := make(chan error, 1)
	for i := 0; i < 10_000; i++ {
		s.AppendBatch(nil, uint64(i), msgs("m"))
		if i == 0 {
			continue
		}
		go func() { _, err := io.WriteString(pw, rsp(i+1, "200 OK")); answers <- err }() // the answer to message i-1, txnr i+1
		a, err := s.ReadAck()
		if err != nil || a.Through != uint64(i) {
			t.Fatalf("ack %d: %v, %v", i, a, err)
		}
		if err := <-answers; err != nil {
			t.Fatal(err)
		}
	}
	if c := relp.QueueCap(s); c > 64 {
		t.Fatalf("queue capacity %d after 10,000 messages with one outstanding", c)
	}
}

// openAfter gives its pieces one per Read, as chunks does, and then
// stands for a server that keeps the connection open: a Read past the
// pieces is recorded and fails.
type openAfter struct {
	chunks
	overread bool
}

var errStillOpen = errors.New("the server keeps the connection open")

func (o *openAfter) Read(p []byte) (int, error) {
	n, err := o.chunks.Read(p)
	if err == io.EOF {
		o.overread = true
		return 0, errStillOpen
	}
	return n, err
}

// Once the server answered the close command, ReadAck reports the Acks
// still to report and then io.EOF at once: it does not wait for the server
// to end the connection, nor read what comes after the answer.
func TestReadAckCloseAnsweredConnectionOpen(t *testing.T) {
	open, answers := okOpen, rsp(2, "200 OK")+rsp(3, "500 no")+rsp(4, "")
	for _, pieces := range [][]string{
		{open + answers},
		{open, answers},
		{open, rsp(2, "200 OK"), rsp(3, "500 no"), rsp(4, "")},
		{open, rsp(2, "200 OK") + rsp(3, "500 no"), rsp(4, "")},
	} {
		r := &openAfter{chunks: chunks{pieces: pieces}}
		s, err := relp.New().Open(&fakeRW{in: r})
		if err != nil {
			t.Fatal(err)
		}
		s.AppendBatch(nil, 100, msgs("a", "b"))
		s.AppendClose(nil)
		as, err := acks(s)
		want := "[{101 <nil>} {102 relp: refused by the server: 500 \"no\"}]"
		if got := fmt.Sprint(collapse(t, as)); got != want || err != io.EOF || r.overread {
			t.Errorf("pieces %q: %s, %v, read past the close's answer %v; want %s, EOF, false", pieces, got, err, r.overread, want)
		}
	}
}

// Once more than half the queue of outstanding messages has been reported,
// its storage is reused: sending as many messages as were reported, no
// more outstanding than the storage holds, does not grow it.
func TestQueueReusedAfterAcks(t *testing.T) {
	const n, answered = 200, 150
	var server strings.Builder
	for i := range answered {
		server.WriteString(rsp(i+2, "200 OK"))
	}
	s, _ := open(t, server.String())
	batch := make([]string, n)
	for i := range batch {
		batch[i] = "m"
	}
	s.AppendBatch(nil, 0, msgs(batch...))
	c := relp.QueueCap(s)
	if c < n || c > n*5/4 {
		t.Fatalf("queue capacity %d for %d messages: the test assumes about %d", c, n, n)
	}
	for through := uint64(0); through < answered; {
		a, err := s.ReadAck()
		if err != nil || a.Through <= through || a.Through > answered {
			t.Fatalf("ReadAck: %v, %v", a, err)
		}
		through = a.Through
	}
	s.AppendBatch(nil, n, msgs(batch[:answered]...)) // n-answered+answered outstanding
	if c2 := relp.QueueCap(s); c2 != c {
		t.Errorf("queue capacity %d after %d of %d answered and %d more sent, was %d", c2, answered, n, answered, c)
	}
}
