package conn

import (
	"context"
	"fmt"
	"log/slog"
)

// slogAdapter lets a *slog.Logger receive the Manager's go-kit style log
// lines: "level" and "msg" become the record's level and message, the other
// pairs its attributes.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Log(keyvals ...any) error {
	level, msg := slog.LevelInfo, ""
	attrs := make([]any, 0, len(keyvals))
	for i := 1; i < len(keyvals); i += 2 { // a key without a value is dropped
		key, value := fmt.Sprint(keyvals[i-1]), keyvals[i]
		switch key {
		case "level":
			switch fmt.Sprint(value) {
			case "warn":
				level = slog.LevelWarn
			case "error":
				level = slog.LevelError
			}
		case "msg":
			msg = fmt.Sprint(value)
		default:
			attrs = append(attrs, slog.Any(key, value))
		}
	}
	a.l.Log(context.Background(), level, msg, attrs...)
	return nil
}
