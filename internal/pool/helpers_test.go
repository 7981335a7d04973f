package pool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeClient returns a scripted result from Probe and counts the calls.
type fakeClient struct {
	mu       sync.Mutex
	probe    upstream.Probe
	probeErr error
	probes   int
	secrets  []string // credentials the probes were sent with
}

func (f *fakeClient) Chat(context.Context, upstream.Credential, upstream.ChatRequest) (upstream.Stream, error) {
	return nil, errors.New("fake client does not chat")
}

func (f *fakeClient) Probe(_ context.Context, c upstream.Credential) (upstream.Probe, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	f.secrets = append(f.secrets, c.Secret.Reveal())
	return f.probe, f.probeErr
}

func (f *fakeClient) setProbe(p upstream.Probe, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probe, f.probeErr = p, err
}

func (f *fakeClient) probeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probes
}

// harness is a pool over a real SQLite store with a fake clock and a fake
// grok client.
type harness struct {
	t      *testing.T
	cfg    pool.Config
	st     *sqlite.Store
	kr     *keyring.Keyring
	clock  *clock
	client *fakeClient
	reg    *prometheus.Registry
	pool   *pool.Pool
	added  int
}

// testConfig is the default config without the per-session token bucket,
// so tests can send many requests at one instant.
func testConfig() pool.Config {
	cfg := pool.DefaultConfig()
	cfg.RatePerSecond = 0
	return cfg
}

func newHarness(t *testing.T, cfg pool.Config) *harness {
	t.Helper()
	kr, err := keyring.Parse(keyring.Generate())
	if err != nil {
		t.Fatalf("parse keyring: %v", err)
	}
	h := &harness{t: t, cfg: cfg, st: sqlite.OpenTest(t), kr: kr, clock: newClock(), client: &fakeClient{}}
	h.pool = h.open()
	return h
}

// open returns a new loaded pool over the harness's store.
func (h *harness) open() *pool.Pool {
	h.t.Helper()
	h.reg = prometheus.NewRegistry()
	clients := map[string]upstream.Client{store.ProviderGrok: h.client}
	p := pool.New(h.cfg, h.st, h.kr, clients, h.reg, h.clock.Now, nil)
	if err := p.Load(context.Background()); err != nil {
		h.t.Fatalf("load pool: %v", err)
	}
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			h.t.Errorf("close pool: %v", err)
		}
	})
	return p
}

// add adds a grok session with a unique cookie and returns its view.
func (h *harness) add() pool.View {
	h.t.Helper()
	h.added++
	cookie := fmt.Sprintf("sso=cookie-%d-secret", h.added)
	v, err := h.pool.Add(context.Background(), pool.AddRequest{
		Provider:   store.ProviderGrok,
		Credential: secret.New(cookie),
		DedupKey:   cookie,
		Label:      fmt.Sprintf("account %d", h.added),
	})
	if err != nil {
		h.t.Fatalf("add session: %v", err)
	}
	return v
}

func (h *harness) acquire(req pool.AcquireRequest) *pool.Lease {
	h.t.Helper()
	if req.Provider == "" {
		req.Provider = store.ProviderGrok
	}
	l, err := h.pool.Acquire(context.Background(), req)
	if err != nil {
		h.t.Fatalf("acquire: %v", err)
	}
	return l
}

// call leases a session and releases it with err.
func (h *harness) call(req pool.AcquireRequest, err error) string {
	h.t.Helper()
	l := h.acquire(req)
	h.pool.Release(l, pool.Result{Err: err, Latency: 100 * time.Millisecond})
	return l.SessionID
}

func (h *harness) get(id string) pool.View {
	h.t.Helper()
	v, ok := h.pool.Get(id)
	if !ok {
		h.t.Fatalf("session %q not in pool", id)
	}
	return v
}

func (h *harness) flush() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.pool.Flush(ctx); err != nil {
		h.t.Fatalf("flush: %v", err)
	}
}

// noSession asserts that Acquire fails with a *NoSessionError and returns it.
func (h *harness) noSession(req pool.AcquireRequest) *pool.NoSessionError {
	h.t.Helper()
	if req.Provider == "" {
		req.Provider = store.ProviderGrok
	}
	l, err := h.pool.Acquire(context.Background(), req)
	var ns *pool.NoSessionError
	if !errors.As(err, &ns) {
		h.t.Fatalf("Acquire = %v, %v; want a *NoSessionError", l, err)
	}
	return ns
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func upstreamErr(o upstream.Outcome) error {
	return &upstream.Error{Outcome: o, Message: "scripted " + string(o)}
}

// metricValue returns the value of the sample of family name whose labels
// include the given name-value pairs.
func metricValue(t *testing.T, h *harness, name string, labels ...string) float64 {
	t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, m := range f.GetMetric() {
			have := make(map[string]string)
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue samples
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no sample of %s with labels %v", name, labels)
	return 0
}
