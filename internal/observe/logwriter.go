package observe

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// logBufferSize is the buffered size at which a LogWriter writes at once.
const logBufferSize = 32 << 10

// LogWriter batches log lines for an underlying writer: a line is written
// at most interval after it was logged, or at once when the buffer
// passes 32 KiB. A request logs one line, so at thousands of requests a
// second this turns thousands of write system calls into one per
// interval. A process killed outright loses at most interval of lines.
// Flush and Close write what is buffered. It is safe for concurrent use.
type LogWriter struct {
	w        io.Writer
	interval time.Duration

	mu    sync.Mutex // guards the fields below and the writes to w
	buf   []byte
	timer *time.Timer // armed while buf holds lines
	err   error       // the last write error, returned by the next Write
}

// NewLogWriter returns a LogWriter for w. An interval of 0 or less writes
// every line at once, as w would.
func NewLogWriter(w io.Writer, interval time.Duration) *LogWriter {
	return &LogWriter{w: w, interval: interval}
}

// Write buffers p, which slog's handlers pass as one whole line.
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.err; err != nil {
		l.err = nil
		return 0, err
	}
	if l.interval <= 0 {
		return l.w.Write(p)
	}
	l.buf = append(l.buf, p...)
	if len(l.buf) >= logBufferSize {
		return len(p), l.flushLocked()
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(l.interval, func() { l.Flush() })
	} else if len(l.buf) == len(p) {
		l.timer.Reset(l.interval)
	}
	return len(p), nil
}

// Flush writes the buffered lines.
func (l *LogWriter) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
}

func (l *LogWriter) flushLocked() error {
	if len(l.buf) == 0 {
		return nil
	}
	_, err := l.w.Write(l.buf)
	l.err = err
	l.buf = l.buf[:0]
	if cap(l.buf) > 4*logBufferSize {
		l.buf = nil // a burst of long lines does not stay in memory
	}
	return err
}

// Close writes the buffered lines and stops the timer. Lines written
// after Close go to w at once.
func (l *LogWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
	}
	err := l.flushLocked()
	l.interval = 0
	return err
}

// flushHandler writes the LogWriter's buffer after every record of level
// warn and above, so that problems are not held back.
type flushHandler struct {
	next slog.Handler
	w    *LogWriter
}

func (h flushHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h flushHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.next.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushHandler{next: h.next.WithAttrs(attrs), w: h.w}
}

func (h flushHandler) WithGroup(name string) slog.Handler {
	return flushHandler{next: h.next.WithGroup(name), w: h.w}
}
