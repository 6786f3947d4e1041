package conn

import (
	"bytes"
	"log/slog"
	"testing"
)

func TestSlogAdapterMapsLevelAndMessageAndDropsADanglingKey(t *testing.T) {
	var buf bytes.Buffer
	a := slogAdapter{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))}
	for _, kv := range [][]any{
		{"level", "error", "msg", "dial failed", "err", "refused", "dangling"},
		{"level", "warn", "msg", "slow"},
		{"msg", "connected", "addr", "127.0.0.1:1"},
	} {
		if err := a.Log(kv...); err != nil {
			t.Fatal(err)
		}
	}
	want := "level=ERROR msg=\"dial failed\" err=refused\n" +
		"level=WARN msg=slow\n" +
		"level=INFO msg=connected addr=127.0.0.1:1\n"
	if have := buf.String(); have != want {
		t.Errorf("logged\n%s\nwant\n%s", have, want)
	}
}
