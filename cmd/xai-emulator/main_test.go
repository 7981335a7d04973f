package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRunRejectsFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no keys", []string{"-listen", "127.0.0.1:0"}, "no keys"},
		{"zero chunks", []string{"-keys", "a", "-chunks", "0"}, "invalid -chunks 0"},
		{"negative delay", []string{"-keys", "a", "-token-delay", "-1s"}, "invalid -token-delay"},
		{"listen error", []string{"-keys", "a", "-listen", "127.0.0.1:-1"}, "listen on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run(%q) = %v; want an error containing %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

func TestRunHelpAndUnknownFlag(t *testing.T) {
	var help bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, io.Discard, &help); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v; want flag.ErrHelp", err)
	}
	for _, f := range []string{"-listen", "-keys", "-token-delay", "-chunks"} {
		if !strings.Contains(help.String(), f) {
			t.Errorf("help lacks %s:\n%s", f, help.String())
		}
	}
	if err := run(context.Background(), []string{"-bogus"}, io.Discard, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("run(-bogus) = %v; want errUsage", err)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRunServesUntilCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-keys", "k1,k2"}, out, io.Discard) }()

	var base string
	deadline := time.Now().Add(5 * time.Second)
	for base == "" && time.Now().Before(deadline) {
		if line, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "listening on "); ok {
			base = line
		}
		time.Sleep(10 * time.Millisecond)
	}
	if base == "" {
		cancel()
		t.Fatalf("no listening line: %q", out.String())
	}
	for key, want := range map[string]int{"k2": 200, "k3": 401} {
		req, _ := http.NewRequest("GET", base+"/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET /v1/models with %s: %d; want %d", key, res.StatusCode, want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
}
