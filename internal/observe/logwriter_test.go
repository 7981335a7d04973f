package observe

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingWriter records each Write call.
type countingWriter struct {
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func (c *countingWriter) state() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.buf.String()
}

func TestLogWriterBatchesLines(t *testing.T) {
	out := &countingWriter{}
	lw := NewLogWriter(out, time.Hour) // only Flush, size and warnings write
	log := NewLogger(lw, "info", "json")
	for i := range 100 {
		log.Info("request", "n", i)
	}
	if n, _ := out.state(); n != 0 {
		t.Fatalf("%d writes before a flush; want 0", n)
	}
	log.Warn("upstream failed")
	n, text := out.state()
	if n != 1 {
		t.Errorf("%d writes after a warning; want 1", n)
	}
	if lines := strings.Count(text, "\n"); lines != 101 {
		t.Errorf("%d lines written; want 101", lines)
	}
	if !strings.HasSuffix(text, "\"upstream failed\"}\n") {
		t.Errorf("the warning is not the last line: %q", text[max(0, len(text)-80):])
	}
}

func TestLogWriterFlushesAfterInterval(t *testing.T) {
	out := &countingWriter{}
	lw := NewLogWriter(out, 20*time.Millisecond)
	defer lw.Close()
	NewLogger(lw, "info", "json").Info("request")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, text := out.state(); strings.Contains(text, `"msg":"request"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the line was not written after the interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLogWriterSizeAndClose(t *testing.T) {
	out := &countingWriter{}
	lw := NewLogWriter(out, time.Hour)
	line := strings.Repeat("x", 1023) + "\n"
	for range logBufferSize / len(line) {
		lw.Write([]byte(line))
	}
	if n, _ := out.state(); n != 1 {
		t.Errorf("%d writes once the buffer is full; want 1", n)
	}
	lw.Write([]byte("last\n"))
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	n, text := out.state()
	if n != 2 || !strings.HasSuffix(text, "last\n") {
		t.Errorf("after Close: %d writes, ends %q; want 2 writes ending in the last line", n, text[len(text)-5:])
	}
	lw.Write([]byte("after\n"))
	if n, _ := out.state(); n != 3 {
		t.Errorf("a write after Close made %d writes in all; want it written at once (3)", n)
	}
}

func TestLogWriterUnbuffered(t *testing.T) {
	out := &countingWriter{}
	log := NewLogger(NewLogWriter(out, 0), "info", "json")
	log.InfoContext(context.Background(), "one")
	log.Info("two")
	if n, _ := out.state(); n != 2 {
		t.Errorf("%d writes with no interval; want 2", n)
	}
}
