// Package pool holds the upstream sessions in memory, chooses one for each
// request, records how each call went and saves status changes to the
// store.
//
// A session is in rotation while it is healthy, not resting, has a token in
// its rate bucket, is under its concurrency cap and has quota left for the
// model. Acquire picks among such sessions by power of two choices; Release
// applies the outcome of the upstream call: a rate-limited session rests, a
// rejected login is checked and expired, a blocked account or a high
// failure rate quarantines the session. A circuit breaker per provider
// stops traffic while the whole upstream fails.
package pool

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Config sets the pool's rotation, failure and circuit-breaker rules.
// DefaultConfig returns the defaults. New replaces a zero field with its
// default unless the field's comment gives zero a meaning.
type Config struct {
	// RotationThreshold is the number of requests a session may serve in
	// one RotationWindow before it rests until the window ends. Zero means
	// no cap.
	RotationThreshold int
	// RotationWindow is the length of a rotation window (default 24h).
	RotationWindow time.Duration

	// FailureThreshold is the failure rate (0-1) over the last
	// FailureWindow charged requests above which a session is quarantined
	// (default 0.2).
	FailureThreshold float64
	// FailureWindow is the number of charged requests in the failure rate
	// (default 20).
	FailureWindow int
	// MinRequests is the number of charged requests a session must have in
	// its window before the failure rate can quarantine it (default 10).
	MinRequests int

	// RatePerSecond is the refill rate of each session's token bucket;
	// the bucket holds max(1, RatePerSecond) tokens. Zero means no limit.
	RatePerSecond float64
	// Limiter, when set, holds the token buckets in place of this process,
	// so that the rate of a session holds across replicas (the Redis
	// limiter). Nil means a bucket per session in this process.
	Limiter SessionLimiter

	// HealthCheckInterval is the period of the loop that Run drives
	// (default 30s).
	HealthCheckInterval time.Duration
	// MaxAge is how long a healthy session may go without a successful
	// probe before the health check probes it (default 24h).
	MaxAge time.Duration
	// DefaultCooldown is the rest after a rate limit whose reset time is
	// unknown (default 60s).
	DefaultCooldown time.Duration

	// CircuitWindow is the number of recent calls per provider, and per
	// outbound route, that the circuit breakers look at (default 20).
	CircuitWindow int
	// CircuitThreshold is the share (0-1) of those calls that must fail
	// for the provider's circuit to open (default 0.5). It counts
	// unavailable calls.
	CircuitThreshold float64
	// EgressThreshold is the share (0-1) of recent calls by one outbound
	// route that must end in egress_rejected for the route's circuit to
	// open (default 0.8). It sits above CircuitThreshold because a single
	// account that trips anti-bot rules, retried on another account, makes
	// up to half the calls of a sound route.
	EgressThreshold float64
	// CircuitCooldown is how long an open circuit stays open before it
	// lets one trial call through (default 30s).
	CircuitCooldown time.Duration
}

// SessionLimiter takes a token from the rate bucket of a session. The
// ratelimit package's limiters implement it.
type SessionLimiter interface {
	// AllowSession reports whether the session may make one more call now
	// at perSecond calls per second.
	AllowSession(ctx context.Context, sessionID string, perSecond float64) (bool, error)
}

// DefaultConfig returns the default settings.
func DefaultConfig() Config {
	return Config{
		RotationThreshold:   500,
		RotationWindow:      24 * time.Hour,
		FailureThreshold:    0.2,
		FailureWindow:       20,
		MinRequests:         10,
		RatePerSecond:       10,
		HealthCheckInterval: 30 * time.Second,
		MaxAge:              24 * time.Hour,
		DefaultCooldown:     60 * time.Second,
		CircuitWindow:       20,
		CircuitThreshold:    0.5,
		EgressThreshold:     0.8,
		CircuitCooldown:     30 * time.Second,
	}
}

// withDefaults replaces the zero fields that have a default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.RotationWindow <= 0 {
		c.RotationWindow = d.RotationWindow
	}

	if c.FailureThreshold <= 0 {
		c.FailureThreshold = d.FailureThreshold
	}

	if c.FailureWindow <= 0 {
		c.FailureWindow = d.FailureWindow
	}

	if c.MinRequests <= 0 {
		c.MinRequests = d.MinRequests
	}

	if c.HealthCheckInterval <= 0 {
		c.HealthCheckInterval = d.HealthCheckInterval
	}

	if c.MaxAge <= 0 {
		c.MaxAge = d.MaxAge
	}

	if c.DefaultCooldown <= 0 {
		c.DefaultCooldown = d.DefaultCooldown
	}

	if c.CircuitWindow <= 0 {
		c.CircuitWindow = d.CircuitWindow
	}

	if c.CircuitThreshold <= 0 {
		c.CircuitThreshold = d.CircuitThreshold
	}

	if c.EgressThreshold <= 0 {
		c.EgressThreshold = d.EgressThreshold
	}

	if c.CircuitCooldown <= 0 {
		c.CircuitCooldown = d.CircuitCooldown
	}
	return c
}

// Pool hands out upstream sessions and records how each one fared.
// It is safe for concurrent use.
//
// Acquire and Release take no pool-wide lock. They read the roster, an
// immutable list of sessions published through an atomic pointer, and lock
// only the entries and circuits they touch. Writers (Load, Add, Remove,
// Reload) build a new roster under mu.
//
// Lock order, outermost first: saveMu, mu, gaugeMu, entry.mu, then the
// leaves (a circuit's mu, writerMu, bgMu). A goroutine never takes an
// outer lock while it holds an inner one.
//
// NOTE: in-flight counts, token buckets and circuits live in this process,
// and rests reach other processes only when they reload. With several
// replicas each applies the per-session caps on its own.
type Pool struct {
	cfg     Config
	st      store.Store
	kr      *keyring.Keyring
	clients map[string]upstream.Client
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics

	ctx    context.Context // canceled by Close; bounds login checks
	cancel context.CancelFunc
	bgMu   sync.Mutex     // orders wg.Add against Close, so no login check starts after Close waits
	wg     sync.WaitGroup // login checks

	// saveMu serialises state writes. A write takes its snapshot while
	// holding it, so a later write never carries older state.
	saveMu sync.Mutex

	roster atomic.Pointer[roster] // the current sessions and provider circuits
	byID   sync.Map               // session id to *entry; written under mu

	mu     sync.Mutex // serialises roster and byID writers; guards the fields below
	egress map[egressKey]*circuit
	loads  int // Reload passes begun; an entry added later has a higher loadedAt

	writerMu sync.Mutex // guards the fields below
	writing  bool       // the state writer goroutine is running
	writeAll bool       // the writer's next pass saves counter-only changes too
	wake     bool       // a status change arrived since the writer's last scan
	closed   bool

	gaugeMu     sync.Mutex  // serialises gauge refreshes
	gaugesStale atomic.Bool // a status changed since the last refresh
}

// New returns a pool over the sessions in st; call Load to read them. kr
// decrypts credentials, clients probes sessions by provider and reg
// receives the pool's metrics (nil registers nothing). now is the clock
// (nil means time.Now). New starts no goroutines; call Run for health
// checks and Close on shutdown.
func New(cfg Config, st store.Store, kr *keyring.Keyring, clients map[string]upstream.Client,
	reg prometheus.Registerer, now func() time.Time, log *slog.Logger) *Pool {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		cfg:     cfg.withDefaults(),
		st:      st,
		kr:      kr,
		clients: clients,
		now:     now,
		log:     log,
		metrics: newMetrics(reg),
		ctx:     ctx,
		cancel:  cancel,
		egress:  make(map[egressKey]*circuit),
	}
	p.roster.Store(&roster{byProvider: map[string][]*entry{}, circuits: map[string]*circuit{}})
	p.mu.Lock()
	for provider := range clients {
		p.circuitLocked(provider)
	}
	p.mu.Unlock()
	return p
}

// Load replaces the pool's sessions with those in the store and sets the
// session gauges. Call it once before serving. A session whose credential
// cannot be decrypted is kept for the admin API but never selected.
func (p *Pool) Load(ctx context.Context) error {
	sessions, err := p.st.Sessions(ctx, store.SessionFilter{})
	if err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}
	now := p.now()
	entries := make([]*entry, 0, len(sessions))
	for _, s := range sessions {
		entries = append(entries, p.newEntry(s, now))
	}

	p.mu.Lock()
	p.replaceLocked(entries)
	p.mu.Unlock()
	p.refreshGauges(now)
	p.log.Info("sessions loaded", "count", len(sessions))
	return nil
}

// newEntry wraps a stored session and decrypts its credential.
func (p *Pool) newEntry(s store.Session, now time.Time) *entry {
	e := &entry{
		s:             s,
		outcomes:      newWindow(p.cfg.FailureWindow),
		tokens:        p.burst(),
		tokensAt:      now,
		rotationStart: now,
	}
	e.egress = egressDirect
	cred, proxy, err := OpenCredential(p.kr, s)
	if err != nil {
		e.unreadable = true
		p.log.Error("session credential unreadable", "session_id", s.ID, "error", err)
		return e
	}
	e.cred, e.proxy = cred, proxy
	if !proxy.Empty() {
		e.egress = egressName(e.proxy)
	}
	return e
}

// Close stops login checks in progress and saves every unsaved state. The
// pool must not be used afterwards.
func (p *Pool) Close(ctx context.Context) error {
	// Cancel under bgMu, so no login check starts after Wait begins.
	p.bgMu.Lock()
	p.cancel()
	p.bgMu.Unlock()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close session pool: %w", ctx.Err())
	}
	err := p.Flush(ctx)
	p.writerMu.Lock()
	p.closed = true
	p.writerMu.Unlock()
	return err
}

// startBackground counts a login check about to start, unless Close has
// begun. It reports whether the check may start.
func (p *Pool) startBackground() bool {
	p.bgMu.Lock()
	defer p.bgMu.Unlock()
	if p.ctx.Err() != nil {
		return false
	}
	p.wg.Add(1)
	return true
}

// CredentialBinding names the credential column of session id, the
// additional data that binds its ciphertext to that row.
func CredentialBinding(id string) keyring.Binding {
	return keyring.Binding{Table: "sessions", Column: "credential", RowID: id}
}

// ProxyBinding names the proxy_url column of session id.
func ProxyBinding(id string) keyring.Binding {
	return keyring.Binding{Table: "sessions", Column: "proxy_url", RowID: id}
}

// OpenCredential decrypts the credential of s and its proxy URL, which is
// empty when the session has none. The error names the column that failed.
func OpenCredential(kr *keyring.Keyring, s store.Session) (cred, proxy secret.Value, err error) {
	plain, err := kr.Decrypt(s.Credential, CredentialBinding(s.ID))
	if err != nil {
		return cred, proxy, fmt.Errorf("session %s: decrypt credential: %w", s.ID, err)
	}
	cred = secret.New(string(plain))
	if len(s.ProxyURL) > 0 {
		plain, err := kr.Decrypt(s.ProxyURL, ProxyBinding(s.ID))
		if err != nil {
			return cred, proxy, fmt.Errorf("session %s: decrypt proxy URL: %w", s.ID, err)
		}
		proxy = secret.New(string(plain))
	}
	return cred, proxy, nil
}

// burst is the capacity of a session's token bucket.
func (p *Pool) burst() float64 {
	return max(1, p.cfg.RatePerSecond)
}
