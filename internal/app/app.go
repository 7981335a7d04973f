// Package app assembles the gateway from its parts: store, keyring, pool,
// upstream clients, authentication, rate limits, audit writer and HTTP
// server. The command line and the end-to-end tests both start it here.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/grokproxy/grokproxy/internal/admin"
	"github.com/grokproxy/grokproxy/internal/api/openai"
	"github.com/grokproxy/grokproxy/internal/audit"
	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/catalog"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/console"
	"github.com/grokproxy/grokproxy/internal/conversation"
	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/privacy"
	"github.com/grokproxy/grokproxy/internal/ratelimit"
	"github.com/grokproxy/grokproxy/internal/retention"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/server"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/instrumented"
	"github.com/grokproxy/grokproxy/internal/store/postgres"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
	"github.com/grokproxy/grokproxy/internal/telemetry"
	"github.com/grokproxy/grokproxy/internal/upstream"
	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
	"github.com/grokproxy/grokproxy/internal/upstream/xai"
)

// App is one running gateway.
type App struct {
	Config  config.Config
	Log     *slog.Logger
	Store   store.Store
	Keyring *keyring.Keyring
	Pool    *pool.Pool
	Auth    *auth.Authenticator
	Limits  ratelimit.Limiter
	Audit   *audit.Writer
	// Retention is the scheduled retention job; Start runs it.
	Retention *retention.Job
	Registry  *prometheus.Registry
	Handler   http.Handler
	// Telemetry sends error reports and traces; nil when both are off.
	Telemetry *telemetry.Telemetry

	// KeyFileCreated is the path of an encryption key file generated on
	// this start; empty when the key came from settings or an old file.
	KeyFileCreated string

	redis  *redis.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New opens the store, applies migrations and builds every part. Its
// background loops start with Start.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	a := &App{Config: cfg, Log: log}
	if err := a.openStore(ctx); err != nil {
		return nil, err
	}
	if err := a.build(ctx); err != nil {
		a.Store.Close()
		return nil, err
	}
	return a, nil
}

// OpenStore opens and migrates the store named by cfg, for commands that
// need only the store.
func OpenStore(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	var (
		st  store.Store
		err error
	)
	if cfg.IsPostgres() {
		st, err = postgres.Open(ctx, cfg.DatabaseURL, cfg.DBPoolMinSize, cfg.DBPoolMaxSize, log)
	} else {
		st, err = sqlite.Open(ctx, cfg.SQLitePath(), log)
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate store: %w", err)
	}
	return st, nil
}

// KeyFilePath returns the path of the encryption key file that the
// embedded SQLite default generates, next to the database file.
func KeyFilePath(cfg config.Config) string {
	return cfg.SQLitePath() + ".key"
}

// LoadKeyring returns the keyring of cfg. On SQLite without a configured
// key it loads, or on first start creates, the key file next to the
// database; created reports the latter.
func LoadKeyring(cfg config.Config) (kr *keyring.Keyring, created bool, err error) {
	if !cfg.EncryptionKey.Empty() {
		kr, err = keyring.Parse(cfg.EncryptionKey.Reveal())
		if err != nil {
			return nil, false, fmt.Errorf("GROKPROXY_ENCRYPTION_KEY: %w", err)
		}
		return kr, false, nil
	}
	if cfg.IsPostgres() {
		return nil, false, errors.New("GROKPROXY_ENCRYPTION_KEY: required with PostgreSQL")
	}
	path := KeyFilePath(cfg)
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, err
		}
	}
	return keyring.LoadOrCreateFile(path)
}

func (a *App) openStore(ctx context.Context) error {
	kr, created, err := LoadKeyring(a.Config)
	if err != nil {
		return err
	}
	a.Keyring = kr
	if created {
		a.KeyFileCreated = KeyFilePath(a.Config)
		a.Log.Warn("generated an encryption key file next to the database; back it up with the database, or set GROKPROXY_ENCRYPTION_KEY",
			"path", a.KeyFileCreated)
	}
	st, err := OpenStore(ctx, a.Config, a.Log)
	if err != nil {
		return err
	}
	a.Store = st
	return nil
}

func (a *App) build(ctx context.Context) error {
	cfg := a.Config
	cat := catalog.Builtin()
	if cfg.ModelsFile != "" {
		var err error
		if cat, err = catalog.LoadFile(cfg.ModelsFile); err != nil {
			return fmt.Errorf("MODELS_FILE: %w", err)
		}
	}
	modelIDs := make([]string, 0, len(cat.Models()))
	for _, m := range cat.Models() {
		modelIDs = append(modelIDs, m.ID)
	}
	a.Registry = observe.NewRegistry()
	metrics := observe.NewMetrics(a.Registry, modelIDs)
	if err := a.startTelemetry(); err != nil {
		return err
	}
	// Every part below reaches the store through the timing wrapper.
	maxConns := 0
	if cfg.IsPostgres() {
		maxConns = cfg.DBPoolMaxSize
	}
	a.Store = instrumented.New(a.Store, a.Registry, instrumented.Options{MaxConns: maxConns})

	xaiConfig := xai.Config{BaseURL: cfg.XAIBaseURL, CleartextHTTP2: cfg.XAIHTTP2Cleartext}
	if err := xaiConfig.Validate(); err != nil {
		return fmt.Errorf("XAI_BASE_URL: %w", err)
	}
	grokConfig := GrokConfig(cfg)
	if err := grokConfig.Validate(); err != nil {
		return fmt.Errorf("grok settings: %w", err)
	}
	grokClient, xaiClient := grokweb.New(grokConfig), xai.New(xaiConfig)
	clients := map[string]upstream.Client{
		store.ProviderGrok: grokClient,
		store.ProviderXAI:  xaiClient,
	}
	providers := []string{store.ProviderGrok, store.ProviderXAI}

	pcfg := pool.DefaultConfig()
	pcfg.RotationThreshold = cfg.SessionRotationThreshold
	pcfg.RotationWindow = cfg.SessionRotationWindow
	pcfg.FailureThreshold = cfg.SessionFailureThreshold
	pcfg.FailureWindow = cfg.SessionFailureWindow
	pcfg.RatePerSecond = cfg.SessionRateLimitPerSecond
	pcfg.HealthCheckInterval = cfg.SessionHealthCheckInterval
	pcfg.MaxAge = cfg.SessionMaxAge
	pcfg.DefaultCooldown = cfg.SessionDefaultCooldown
	pcfg.CircuitCooldown = cfg.CircuitCooldown

	a.Auth = auth.New(auth.Config{
		StaticKeys:                cfg.APIPasswords,
		AdminKeys:                 cfg.AdminAPIKeys,
		BcryptCost:                cfg.BcryptCost,
		DefaultRateLimitPerMinute: cfg.UserRateLimitPerMinute,
	}, a.Store, time.Now, a.Log)
	local := ratelimit.NewMemory(time.Now, cfg.AuthFailureLimitPerMinute)
	a.Limits = local
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		// Short timeouts keep a Redis outage from stalling requests; the
		// fail mode decides what happens to them instead.
		opts.DialTimeout = cmp.Or(opts.DialTimeout, 2*time.Second)
		opts.ReadTimeout = cmp.Or(opts.ReadTimeout, 2*time.Second)
		opts.WriteTimeout = cmp.Or(opts.WriteTimeout, 2*time.Second)
		a.redis = redis.NewClient(opts)
		shared := ratelimit.NewRedis(a.redis, a.Log, ratelimit.WithPrefix(cfg.RedisKeyPrefix+"rl:"),
			ratelimit.WithAuthFailuresPerMinute(cfg.AuthFailureLimitPerMinute))
		var fallback ratelimit.Limiter // RATE_LIMIT_FAIL_MODE=closed: none, so 503
		if cfg.RateLimitFailMode != "closed" {
			fallback = local
		}
		a.Limits = ratelimit.NewFallback(shared, fallback, false, a.Log, ratelimit.WithMetrics(a.Registry))
		a.Auth.SetRedis(a.redis)
		// Session rate buckets in Redis hold across replicas.
		pcfg.Limiter = a.Limits
	}
	a.Pool = pool.New(pcfg, a.Store, a.Keyring, clients, a.Registry, time.Now, a.Log)
	if err := a.Pool.Load(ctx); err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}

	a.Audit = audit.New(audit.Config{
		FlushInterval: cfg.AuditFlushInterval,
		SpoolPath:     cfg.AuditSpoolPath,
		SpoolMaxBytes: cfg.AuditSpoolMaxBytes,
		FullPolicy:    cfg.AuditSpoolFull,
	}, a.Store, a.Registry, a.Log)

	// The summary counts every request record, for the console's charts.
	summary := admin.NewSummary(time.Now)
	api := &openai.Handler{
		Catalog:     cat,
		Pool:        a.Pool,
		Clients:     clients,
		Audit:       &contentPolicy{next: summary.Tap(a.Audit), mode: cfg.StoreContent, encrypt: cfg.EncryptContent, ring: a.Keyring},
		Metrics:     metrics,
		Log:         a.Log,
		MaxAttempts: cfg.MaxAttempts,
		Limits:      openai.Limits{MaxMessages: cfg.MaxMessages, MaxPromptBytes: cfg.MaxPromptBytes},
		Now:         time.Now,
	}
	api.Conversations = conversation.New(a.Store, a.Keyring.Derive(conversation.KeyPurpose))
	imageURLs, err := openai.NewImageURLs(a.Keyring.Derive("image-links"), cfg.ImageURLTTL, time.Now)
	if err != nil {
		return err
	}
	api.ImageURLs = imageURLs
	checker := &SessionChecker{Store: a.Store, Keyring: a.Keyring, Grok: grokClient, XAI: xaiClient}
	priv := &privacy.Service{Store: a.Store, Queue: a.Audit, Keys: a.Auth, Upstream: checker,
		Open: func(g store.Generation) (store.Generation, error) { return openGeneration(a.Keyring, g) }}
	a.Retention = retention.FromConfig(cfg, a.Store, "scheduler", a.Log)
	a.Retention.OnSessionsDeleted = func(ids []string) {
		for _, id := range ids {
			a.Pool.Remove(context.Background(), id)
		}
	}
	adm := &admin.Handler{
		Pool:      a.Pool,
		Keys:      a.Auth,
		Users:     a.Store,
		Parse:     parseCredential,
		Providers: providers,
		Log:       a.Log,
		Now:       time.Now,
		Audit:     a.Store,
		Privacy:   priv,
		Retention: a.Retention,
		// Prompt text is shown only when the gateway stores it whole.
		Generations: a.Store,
		Content: admin.ContentAccess{Show: cfg.StoreContent == "full",
			Open: func(g store.Generation) (store.Generation, error) { return openGeneration(a.Keyring, g) }},
		Summary: summary,
		Checker: checker,
	}
	components := []server.NamedHealth{
		{Name: "store", Required: true, Health: storeHealth{a.Store}},
		{Name: "sessions", Required: true, Health: poolHealth{pool: a.Pool, providers: providers}},
		{Name: "circuit", Required: true, Health: circuitHealth{pool: a.Pool, providers: providers}},
	}
	if a.redis != nil {
		components = append(components, server.NamedHealth{Name: "redis", Health: redisHealth{a.redis}})
	}
	a.Handler = server.New(server.Deps{
		Config:     cfg,
		Auth:       a.Auth,
		Limits:     a.Limits,
		API:        api,
		Admin:      adm,
		Console:    console.Handler(),
		Me:         &openai.Me{Privacy: priv, Log: a.Log},
		Registry:   a.Registry,
		Metrics:    metrics,
		Components: components,
		Ready:      readiness(a.Store, a.Pool, cfg.ReadyRequiresSession),
		Telemetry:  a.Telemetry,
		Log:        a.Log,
	})
	return nil
}

// parseCredential normalises a new session's credential text.
func parseCredential(provider, text string) (secret.Value, string, error) {
	switch provider {
	case store.ProviderGrok:
		c, err := grokweb.ParseCookie(text)
		if err != nil {
			return secret.Value{}, "", err
		}
		return secret.New(text), c.DedupKey(), nil
	case store.ProviderXAI:
		key, err := xai.ParseKey(text)
		if err != nil {
			return secret.Value{}, "", err
		}
		return secret.New(key), key, nil
	}
	return secret.Value{}, "", fmt.Errorf("provider %s is not served", provider)
}

// Start runs the background loops until Close.
func (a *App) Start(ctx context.Context) {
	ctx, a.cancel = context.WithCancel(ctx)
	for _, run := range []func(context.Context){a.Pool.Run, a.Auth.Run, a.Audit.Run, a.Retention.Run} {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			run(ctx)
		}()
	}
}

// BootstrapAdmin creates an admin user and key when the store has no admin
// and no static admin key is configured. It returns the key text, which the
// caller shows once, or "" when nothing was created.
func (a *App) BootstrapAdmin(ctx context.Context) (string, error) {
	if len(a.Config.AdminAPIKeys) > 0 {
		return "", nil
	}
	n, err := a.Store.CountAdmins(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	now := time.Now()
	u := store.User{ID: "usr_admin", Name: "admin", Role: store.RoleAdmin, Active: true, CreatedAt: now, UpdatedAt: now}
	if err := a.Store.CreateUser(ctx, &u); err != nil && !errors.Is(err, store.ErrConflict) {
		return "", err
	}
	_, text, err := a.Auth.CreateKey(ctx, u.ID, "first admin key", time.Time{})
	if err != nil {
		return "", err
	}
	return text, nil
}

// Serve serves HTTP on ln until ctx is done, then shuts down gracefully:
// it stops accepting and lets requests finish up to SHUTDOWN_TIMEOUT.
// Close then flushes the audit writer.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := server.HTTPServer(a.Config, a.Handler, a.Log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.Log.Info("shutting down", "timeout", a.Config.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	return err
}

// Close stops the background loops, flushes the audit writer and closes
// the store.
func (a *App) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	errs := []error{a.Audit.Close(ctx)}
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	if c, ok := any(a.Pool).(interface{ Close(context.Context) error }); ok {
		errs = append(errs, c.Close(ctx))
	}
	if a.redis != nil {
		errs = append(errs, a.redis.Close())
	}
	errs = append(errs, a.Store.Close())
	errs = append(errs, a.Telemetry.Shutdown(ctx))
	return errors.Join(errs...)
}

type storeHealth struct{ st store.Store }

func (h storeHealth) Check(ctx context.Context) (string, map[string]any) {
	start := time.Now()
	if err := h.st.Ping(ctx); err != nil {
		return "down", map[string]any{"error": "unreachable"}
	}
	return "ok", map[string]any{"latency_ms": time.Since(start).Milliseconds()}
}

type poolHealth struct {
	pool      *pool.Pool
	providers []string
}

func (h poolHealth) Check(ctx context.Context) (string, map[string]any) {
	usable := 0
	circuits := map[string]string{}
	for _, p := range h.providers {
		usable += h.pool.Usable(p)
		circuits[p] = h.pool.CircuitState(p)
	}
	details := map[string]any{"counts": h.pool.Counts(), "usable": usable, "circuits": circuits,
		"egress": h.pool.EgressStates()}
	// With no session in rotation no chat can be served.
	if usable == 0 {
		return "down", details
	}
	return "ok", details
}

type redisHealth struct{ c *redis.Client }

// Check reports Redis as degraded, not down, when it is unreachable,
// because the replica then limits requests on its own.
func (h redisHealth) Check(ctx context.Context) (string, map[string]any) {
	if err := h.c.Ping(ctx).Err(); err != nil {
		return "degraded", map[string]any{"error": "unreachable"}
	}
	return "ok", nil
}
