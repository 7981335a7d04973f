package observe

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Access is the access log line of one request.
type Access struct {
	RequestID string
	Method    string
	Path      string
	Route     string
	Status    int
	Bytes     int64
	Duration  time.Duration
	ClientIP  string
}

// accessWriter writes access lines in the format of slog's JSON handler
// without building a slog record. It serves the loggers of NewLogger with
// the JSON format.
type accessWriter struct {
	w    io.Writer
	bufs sync.Pool // of *[]byte
}

// LogAccess logs a at level info on log, as a "request" record with the
// fields of Access. A request logs one such line, so for a logger of
// NewLogger with the JSON format it encodes the line itself, the same
// bytes slog's JSON handler would write, at a fraction of the cost. Other
// loggers, and values that need escaping or scrubbing, get an ordinary
// record.
func LogAccess(ctx context.Context, log *slog.Logger, a Access) {
	h := log.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	if ch, ok := h.(contextHandler); ok && ch.access != nil && a.plain() {
		ch.access.write(time.Now(), a)
		return
	}
	_ = h.Handle(ctx, a.record(time.Now()))
}

// record returns a as a slog record logged at t.
func (a Access) record(t time.Time) slog.Record {
	r := slog.NewRecord(t, slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.String("request_id", a.RequestID),
		slog.String("method", a.Method),
		slog.String("path", a.Path),
		slog.String("route", a.Route),
		slog.Int("status", a.Status),
		slog.Int64("bytes", a.Bytes),
		slog.Duration("duration", a.Duration),
		slog.String("client_ip", a.ClientIP),
	)
	return r
}

// plain reports whether every string of a is printable ASCII that JSON
// writes as it is, and that the scrubber leaves alone.
func (a Access) plain() bool {
	for _, s := range [...]string{a.RequestID, a.Method, a.Path, a.Route, a.ClientIP} {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				return false
			}
		}
		if mayHoldSecret(s) {
			return false
		}
	}
	return true
}

func (aw *accessWriter) write(t time.Time, a Access) {
	bp, _ := aw.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := appendAccess((*bp)[:0], t, a)
	_, _ = aw.w.Write(b)
	*bp = b
	if cap(b) <= 4<<10 {
		aw.bufs.Put(bp)
	}
}

// appendAccess appends the JSON line of a, logged at t, to b. The strings
// of a must be plain (see Access.plain).
func appendAccess(b []byte, t time.Time, a Access) []byte {
	b = append(b, `{"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","request_id":"`...)
	b = append(b, a.RequestID...)
	b = append(b, `","method":"`...)
	b = append(b, a.Method...)
	b = append(b, `","path":"`...)
	b = append(b, a.Path...)
	b = append(b, `","route":"`...)
	b = append(b, a.Route...)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(a.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, a.Bytes, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, int64(a.Duration), 10)
	b = append(b, `,"client_ip":"`...)
	b = append(b, a.ClientIP...)
	return append(b, "\"}\n"...)
}
