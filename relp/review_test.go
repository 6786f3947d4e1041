package relp_test

// A second adversarial review: the RELP client against what librelp's
// server sends, split at every byte boundary.

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
)

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
func TestReviewEverySplit(t *testing.T) {
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

// librelp's server answers open with its offers in its own order and may
// add offers this client does not know; neither may refuse the session.
func TestReviewOpenOffers(t *testing.T) {
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
