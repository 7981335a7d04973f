package pool

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// TestRequestPathTakesNoPoolLock holds every pool-wide lock and checks
// that requests still lease and return sessions, with each outcome that
// leaves the session healthy.
func TestRequestPathTakesNoPoolLock(t *testing.T) {
	kr, err := keyring.Parse(keyring.Generate())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.RotationThreshold = 0
	p := New(cfg, sqlite.OpenTest(t), kr, nil, nil, nil, nil)
	t.Cleanup(func() { p.Close(context.Background()) })
	for i := range 3 {
		cookie := fmt.Sprintf("sso=lock-%d", i)
		if _, err := p.Add(context.Background(), AddRequest{Provider: store.ProviderGrok, Credential: secret.New(cookie)}); err != nil {
			t.Fatal(err)
		}
	}

	p.saveMu.Lock()
	p.mu.Lock()
	p.gaugeMu.Lock()
	defer func() {
		p.gaugeMu.Unlock()
		p.mu.Unlock()
		p.saveMu.Unlock()
	}()

	results := []error{nil, context.Canceled, &upstream.Error{Outcome: upstream.OutcomeRejectedRequest}}
	done := make(chan error, 1)
	go func() {
		for i := range 30 {
			l, err := p.Acquire(context.Background(), AcquireRequest{Provider: store.ProviderGrok})
			if err != nil {
				done <- err
				return
			}
			p.Release(l, Result{Err: results[i%len(results)]})
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire or Release waited for a pool-wide lock")
	}
}
