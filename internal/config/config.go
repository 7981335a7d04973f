// Package config loads the gateway's settings from environment variables, an
// optional YAML file and `_FILE` variants for secrets, and validates them
// before the server listens.
//
// Precedence, lowest first: built-in defaults, the config file, environment
// variables. A setting NAME that holds a secret may also be read from the
// file named by NAME_FILE.
package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
)

// Config is every setting of the gateway. Each field names its environment
// variable; Settings lists them with defaults and help text.
type Config struct {
	Host string // HOST: listen address, default all interfaces
	Port int    // PORT: listen port, default 8000

	DatabaseURL   string // DATABASE_URL: postgres://… or a SQLite path, default ./grokproxy.db
	DBPoolMinSize int    // DB_POOL_MIN_SIZE: PostgreSQL connections kept open, default 2
	DBPoolMaxSize int    // DB_POOL_MAX_SIZE: PostgreSQL connections at most, default 20
	RedisURL      string // REDIS_URL: shared state for replicas; empty keeps state in process

	// EncryptionKey (GROKPROXY_ENCRYPTION_KEY) is the keyring text,
	// "ID:BASE64,ID:BASE64" with the newest last. Empty is allowed only on
	// SQLite, where a key file is generated next to the database.
	EncryptionKey secret.Value

	APIPasswords []secret.Value // API_PASSWORD: static user keys, comma-separated
	AdminAPIKeys []secret.Value // ADMIN_API_KEYS: static admin keys, comma-separated

	GrokBaseURL string // GROK_BASE_URL: origin of the Grok web app, default https://grok.com
	XAIBaseURL  string // XAI_BASE_URL: official xAI API base, default https://api.x.ai/v1
	// XAIHTTP2Cleartext is XAI_HTTP2_CLEARTEXT: HTTP/2 without TLS to an
	// http:// XAI_BASE_URL.
	XAIHTTP2Cleartext bool

	// The Grok web settings below follow a protocol that drifts; each one
	// names the period its default matches in docs/grok-web-settings.md.
	GrokAssetsURL        string        // GROK_ASSETS_URL: origin of generated media; empty derives it from GROK_BASE_URL
	GrokChatTransport    string        // GROK_CHAT_TRANSPORT: rest, ws or auto; default auto
	GrokWSFallbackTTL    time.Duration // GROK_WS_FALLBACK_TTL: how long auto keeps a session on REST after a refused upgrade, default 30m
	GrokModelSelector    string        // GROK_MODEL_SELECTOR: modeId, modelName+modelMode or modelName; default modeId
	GrokStatsigMode      string        // GROK_STATSIG_MODE: computed, fixed, signer, fallback or none; default computed
	GrokStatsigValue     secret.Value  // GROK_STATSIG_VALUE: fixed header value, or the page's verification key
	GrokStatsigSignerURL string        // GROK_STATSIG_SIGNER_URL: signer service for GROK_STATSIG_MODE=signer
	GrokUserAgent        string        // GROK_USER_AGENT: empty means the Chrome version of GROK_TLS_PROFILE
	GrokClientHints      string        // GROK_CLIENT_HINTS: Sec-Ch-Ua value; empty derives it from the user agent
	GrokTLSProfile       string        // GROK_TLS_PROFILE: go, chrome or chrome_<major>; default chrome
	GrokProxyURL         secret.Value  // GROK_PROXY_URL: outbound proxy of sessions without their own; empty means direct

	LogLevel          string        // LOG_LEVEL: debug, info, warn or error; default info
	LogFormat         string        // LOG_FORMAT: json or text; default json
	LogFlushInterval  time.Duration // LOG_FLUSH_INTERVAL: longest time a log line of level info or below waits in the buffer; default 100ms; 0 writes each at once
	MetricsEnabled    bool          // METRICS_ENABLED: serve /metrics, default true
	SentryDSN         secret.Value  // SENTRY_DSN: error reports to Sentry; empty turns them off
	SentryEnvironment string        // SENTRY_ENVIRONMENT: environment tag of error reports; empty leaves it out
	// OTLPEndpoint (OTEL_EXPORTER_OTLP_ENDPOINT) is the base http(s) URL of
	// an OTLP/HTTP collector that receives request traces; empty turns
	// tracing off.
	OTLPEndpoint string
	// ReadyRequiresSession (READY_REQUIRES_SESSION) keeps /readyz at 503
	// until at least one session is healthy; default true.
	ReadyRequiresSession bool

	UserRateLimitPerMinute int // USER_RATE_LIMIT_PER_MINUTE: default per-user limit, 60
	// AuthFailureLimitPerMinute (AUTH_FAILURE_LIMIT_PER_MINUTE) is the
	// number of failed authentications a client address may have in one
	// minute before it gets 429; default 20, 0 disables the limit.
	AuthFailureLimitPerMinute int
	// RateLimitFailMode (RATE_LIMIT_FAIL_MODE) decides what happens while
	// Redis is unreachable: "open" (default) limits each replica on its
	// own, "closed" returns 503.
	RateLimitFailMode string
	// RedisKeyPrefix (REDIS_KEY_PREFIX) starts every Redis key that the
	// rate limits write; default "grokproxy:".
	RedisKeyPrefix string

	SessionRotationThreshold   int           // SESSION_ROTATION_THRESHOLD: 500 requests per window
	SessionRotationWindow      time.Duration // SESSION_ROTATION_WINDOW: 24h
	SessionMaxAge              time.Duration // SESSION_MAX_AGE_HOURS: 24 (hours)
	SessionFailureThreshold    float64       // SESSION_FAILURE_THRESHOLD: 0.2
	SessionFailureWindow       int           // SESSION_FAILURE_WINDOW: 20 requests
	SessionRateLimitPerSecond  float64       // SESSION_RATE_LIMIT_PER_SECOND: 10
	SessionHealthCheckInterval time.Duration // SESSION_HEALTH_CHECK_INTERVAL: 30s
	SessionDefaultCooldown     time.Duration // SESSION_DEFAULT_COOLDOWN: 60s
	// CircuitCooldown (CIRCUIT_COOLDOWN) is how long an open circuit, of a
	// provider or of an outbound route, fails fast before it lets one
	// trial call through; default 30s.
	CircuitCooldown time.Duration

	MaxAttempts     int           // MAX_ATTEMPTS: upstream tries per request, default 3
	ImageURLTTL     time.Duration // IMAGE_URL_TTL: lifetime of generated image links, default 1h; 0 means 1h
	RequestTimeout  time.Duration // REQUEST_TIMEOUT: deadline of one request, default 5m
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: drain deadline on SIGTERM, default 30s
	MaxBodyBytes    int64         // MAX_BODY_BYTES: request body cap, default 10 MiB

	MaxMessages    int // MAX_MESSAGES: messages in one chat request, default 2048
	MaxPromptBytes int // MAX_PROMPT_BYTES: text of all messages of one request, default 4 MiB
	MaxHeaderBytes int // MAX_HEADER_BYTES: request line and headers, default 64 KiB
	MaxHeaderCount int // MAX_HEADER_COUNT: header fields per request, default 100
	MaxInFlight    int // MAX_IN_FLIGHT: requests served at once; excess gets 503; 0 means no cap
	GCHeadroomMB   int // GC_HEADROOM_MB: heap growth allowed between garbage collections, default 20; 0 means Go's default

	ReadHeaderTimeout  time.Duration // READ_HEADER_TIMEOUT: time to send the headers, default 10s
	ReadTimeout        time.Duration // READ_TIMEOUT: time to send the whole request, default 60s
	IdleTimeout        time.Duration // IDLE_TIMEOUT: keep-alive connection idle time, default 120s
	StreamWriteTimeout time.Duration // STREAM_WRITE_TIMEOUT: time one response write may block, default 30s

	CORSAllowedOrigins []string       // CORS_ALLOWED_ORIGINS: default any origin
	IPAllowlist        []netip.Prefix // IP_ALLOWLIST: CIDRs allowed on /v1; empty allows all
	AdminIPAllowlist   []netip.Prefix // ADMIN_IP_ALLOWLIST: CIDRs allowed on /admin; empty allows all
	TrustedProxies     []netip.Prefix // TRUSTED_PROXIES: peers whose X-Forwarded-For is believed

	StoreContent string // STORE_CONTENT: full, redacted or none; default full
	// EncryptContent (ENCRYPT_CONTENT) encrypts stored prompts and
	// responses with the keyring.
	EncryptContent bool

	AuditSpoolPath     string        // AUDIT_SPOOL_PATH: default grokproxy-audit.spool
	AuditSpoolMaxBytes int64         // AUDIT_SPOOL_MAX_BYTES: default 256 MiB
	AuditFlushInterval time.Duration // AUDIT_FLUSH_INTERVAL: default 200ms
	AuditSpoolFull     string        // AUDIT_SPOOL_FULL_POLICY: refuse or drop_oldest

	// RetentionGenerationsDays (RETENTION_GENERATIONS_DAYS) is how many
	// days generations are kept, default 90; 0 keeps them forever.
	RetentionGenerationsDays int
	// RetentionDeadSessionsDays (RETENTION_DEAD_SESSIONS_DAYS) is how many
	// days expired and revoked sessions are kept, default 7; 0 keeps them.
	RetentionDeadSessionsDays int
	// RetentionInterval (RETENTION_INTERVAL) is the period of the
	// retention job in serve, default 1h.
	RetentionInterval time.Duration

	BcryptCost int // BCRYPT_COST: cost of new key hashes, default 12

	// WeakBcryptForTests lets tests use a bcrypt cost below MinBcryptCost.
	// No setting sets it, so a deployment cannot.
	WeakBcryptForTests bool

	// ModelsFile (MODELS_FILE) overrides the built-in model table.
	ModelsFile string
}

// MinBcryptCost is the lowest bcrypt cost a deployment may configure.
const MinBcryptCost = 10

// Default returns the built-in defaults.
func Default() Config {
	c := Config{}
	for _, s := range Settings {
		if s.Default != "" {
			if err := s.set(&c, s.Default); err != nil {
				panic(fmt.Sprintf("default of %s: %v", s.Name, err))
			}
		}
	}
	return c
}

// IsPostgres reports whether DatabaseURL names a PostgreSQL server. Any
// other value is a SQLite path.
func (c *Config) IsPostgres() bool {
	return strings.HasPrefix(c.DatabaseURL, "postgres://") ||
		strings.HasPrefix(c.DatabaseURL, "postgresql://")
}

// SQLitePath returns the SQLite file path of DatabaseURL, accepting a bare
// path or a "sqlite://" or "file:" prefix.
func (c *Config) SQLitePath() string {
	p := strings.TrimPrefix(c.DatabaseURL, "sqlite://")
	return strings.TrimPrefix(p, "file:")
}

// Addr returns the listen address.
func (c *Config) Addr() string {
	return fmt.Sprintf("%s:%d", c.Host, c.Port)
}

// Validate checks settings that parse but do not make sense together. The
// error names the setting.
func (c *Config) Validate() error {
	switch {
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("PORT: %d is out of range 0-65535", c.Port)
	case c.DatabaseURL == "":
		return fmt.Errorf("DATABASE_URL: must not be empty")
	case c.IsPostgres() && c.EncryptionKey.Empty():
		return fmt.Errorf("GROKPROXY_ENCRYPTION_KEY: required with PostgreSQL, so that all replicas share one key (write one with `grokproxy keygen -o FILE` and set GROKPROXY_ENCRYPTION_KEY_FILE)")
	case c.DBPoolMinSize > c.DBPoolMaxSize:
		return fmt.Errorf("DB_POOL_MIN_SIZE: %d is above DB_POOL_MAX_SIZE %d", c.DBPoolMinSize, c.DBPoolMaxSize)
	case c.MaxAttempts < 1:
		return fmt.Errorf("MAX_ATTEMPTS: must be at least 1, got %d", c.MaxAttempts)
	case c.ImageURLTTL < 0:
		return fmt.Errorf("IMAGE_URL_TTL: must not be negative, got %s", c.ImageURLTTL)
	case c.SessionFailureThreshold <= 0 || c.SessionFailureThreshold > 1:
		return fmt.Errorf("SESSION_FAILURE_THRESHOLD: must be in (0, 1], got %v", c.SessionFailureThreshold)
	case c.SessionFailureWindow < 10:
		return fmt.Errorf("SESSION_FAILURE_WINDOW: must be at least 10 requests, got %d", c.SessionFailureWindow)
	case c.BcryptCost < MinBcryptCost && !c.WeakBcryptForTests || c.BcryptCost < 4 || c.BcryptCost > 31:
		return fmt.Errorf("BCRYPT_COST: must be in %d-31, got %d", MinBcryptCost, c.BcryptCost)
	case c.UserRateLimitPerMinute < 1:
		return fmt.Errorf("USER_RATE_LIMIT_PER_MINUTE: must be at least 1, got %d", c.UserRateLimitPerMinute)
	case c.AuthFailureLimitPerMinute < 0:
		return fmt.Errorf("AUTH_FAILURE_LIMIT_PER_MINUTE: must be 0 or more, got %d", c.AuthFailureLimitPerMinute)
	case c.MaxBodyBytes < 1024:
		return fmt.Errorf("MAX_BODY_BYTES: must be at least 1024, got %d", c.MaxBodyBytes)
	case c.MaxMessages < 1:
		return fmt.Errorf("MAX_MESSAGES: must be at least 1, got %d", c.MaxMessages)
	case c.MaxPromptBytes < 1024:
		return fmt.Errorf("MAX_PROMPT_BYTES: must be at least 1024, got %d", c.MaxPromptBytes)
	case c.MaxHeaderBytes < 4096:
		return fmt.Errorf("MAX_HEADER_BYTES: must be at least 4096, got %d", c.MaxHeaderBytes)
	case c.MaxHeaderCount < 16:
		return fmt.Errorf("MAX_HEADER_COUNT: must be at least 16, got %d", c.MaxHeaderCount)
	case c.LogFlushInterval < 0 || c.LogFlushInterval > time.Minute:
		return fmt.Errorf("LOG_FLUSH_INTERVAL: must be between 0 and 1m, got %s", c.LogFlushInterval)
	case c.MaxInFlight < 0:
		return fmt.Errorf("MAX_IN_FLIGHT: must not be negative, got %d", c.MaxInFlight)
	case c.GCHeadroomMB < 0 || c.GCHeadroomMB > 1<<20:
		return fmt.Errorf("GC_HEADROOM_MB: must be between 0 and 1048576, got %d", c.GCHeadroomMB)
	}
	if err := checkHTTPURL("OTEL_EXPORTER_OTLP_ENDPOINT", c.OTLPEndpoint); err != nil {
		return err
	}
	if err := oneOf("STORE_CONTENT", c.StoreContent, "full", "redacted", "none"); err != nil {
		return err
	}
	if err := oneOf("RATE_LIMIT_FAIL_MODE", c.RateLimitFailMode, "open", "closed"); err != nil {
		return err
	}
	if c.RetentionGenerationsDays < 0 || c.RetentionDeadSessionsDays < 0 {
		return fmt.Errorf("RETENTION_GENERATIONS_DAYS, RETENTION_DEAD_SESSIONS_DAYS: must not be negative")
	}
	if err := oneOf("AUDIT_SPOOL_FULL_POLICY", c.AuditSpoolFull, "refuse", "drop_oldest"); err != nil {
		return err
	}
	if err := oneOf("LOG_LEVEL", c.LogLevel, "debug", "info", "warn", "error"); err != nil {
		return err
	}
	return oneOf("LOG_FORMAT", c.LogFormat, "json", "text")
}

// checkHTTPURL accepts an empty value or an http(s) URL with a host.
func checkHTTPURL(name, value string) error {
	if value == "" {
		return nil
	}
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: %q is not an http(s) URL such as http://127.0.0.1:4318", name, value)
	}
	return nil
}

func oneOf(name, value string, allowed ...string) error {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not one of %s", name, value, strings.Join(allowed, ", "))
}
