package relp_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/seed44b27a20/conn/relp"
)

// FuzzReadAck feeds arbitrary bytes as the server's side of a session:
// ReadAck must not panic, must end (the input is finite), must report
// Throughs that grow within what was sent, and must fail only with the
// documented errors.
func FuzzReadAck(f *testing.F) {
	for _, seed := range []string{
		rsp(2, "200 OK") + rsp(3, "200 OK"),
		rsp(3, "200 OK") + rsp(2, "500 no\nmore") + rsp(4, ""),
		"0 serverclose 0\n",
		"2 rsp 0\n",
		"2 rsp 999999 ",
		"999999999 rsp 6 200 OK\n1 rsp 6 200 OK\n",
	} {
		f.Add([]byte(seed), uint8(3), false, uint32(2))
		f.Add([]byte(seed), uint8(2), true, uint32(999_999_998))
	}
	f.Fuzz(func(t *testing.T, in []byte, n uint8, closeSent bool, txnr uint32) {
		const first = 1000
		rw := &fakeRW{in: io.MultiReader(strings.NewReader(okOpen), strings.NewReader(string(in)))}
		s, err := relp.New().Open(rw)
		if err != nil {
			t.Fatal(err)
		}
		relp.SetNextTxnr(s, txnr%999_999_999+1)
		batch := make([][]byte, n)
		for i := range batch {
			batch[i] = []byte{'m', byte(i)}
		}
		s.AppendBatch(nil, first, batch)
		if closeSent {
			s.AppendClose(nil)
		}
		through := uint64(first)
		for calls := 0; ; calls++ {
			if calls > int(n)+1 {
				t.Fatalf("ReadAck returned %d Acks for %d messages", calls, n)
			}
			a, err := s.ReadAck()
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, relp.ErrProtocol) && err != relp.ErrServerClose {
					t.Fatalf("ReadAck: unexpected error %v", err)
				}
				return
			}
			if a.Through <= through || a.Through > first+uint64(n) {
				t.Fatalf("Ack %+v after Through %d, %d messages sent from %d", a, through, n, first)
			}
			var re *relp.RefusedError
			if a.Err != nil && !errors.As(a.Err, &re) {
				t.Fatalf("Ack.Err %v is not a RefusedError", a.Err)
			}
			through = a.Through
		}
	})
}
