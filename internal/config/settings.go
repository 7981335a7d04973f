package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
)

// Setting is one configuration variable.
type Setting struct {
	Name    string // environment variable, e.g. "PORT"
	Default string // text form of the default; empty means unset
	Help    string // what it sets and in what unit
	Secret  bool   // may be read from NAME_FILE; never printed
	set     func(c *Config, v string) error
}

// Settings lists every setting in the order `grokproxy serve --help` prints
// them.
var Settings = []Setting{
	{Name: "HOST", Help: "listen address (empty: all interfaces)", set: str(func(c *Config) *string { return &c.Host })},
	{Name: "PORT", Default: "8000", Help: "listen port", set: integer(func(c *Config) *int { return &c.Port })},
	{Name: "DATABASE_URL", Default: "./grokproxy.db", Help: "postgres://… URL, or a SQLite file path", set: str(func(c *Config) *string { return &c.DatabaseURL })},
	{Name: "DB_POOL_MIN_SIZE", Default: "2", Help: "PostgreSQL connections kept open", set: integer(func(c *Config) *int { return &c.DBPoolMinSize })},
	{Name: "DB_POOL_MAX_SIZE", Default: "20", Help: "PostgreSQL connections at most", set: integer(func(c *Config) *int { return &c.DBPoolMaxSize })},
	{Name: "REDIS_URL", Help: "redis:// URL for state shared by replicas (empty: in process)", set: str(func(c *Config) *string { return &c.RedisURL })},
	{Name: "GROKPROXY_ENCRYPTION_KEY", Secret: true, Help: "keyring for data at rest, ID:BASE64 entries (32-byte keys), newest last; required on PostgreSQL", set: secretValue(func(c *Config) *secret.Value { return &c.EncryptionKey })},
	{Name: "API_PASSWORD", Secret: true, Help: "static user keys, comma-separated; each acts as its own user", set: secretList(func(c *Config) *[]secret.Value { return &c.APIPasswords })},
	{Name: "ADMIN_API_KEYS", Secret: true, Help: "static admin keys, comma-separated", set: secretList(func(c *Config) *[]secret.Value { return &c.AdminAPIKeys })},
	{Name: "GROK_BASE_URL", Default: "https://grok.com", Help: "origin of the Grok web app (REST, WebSocket and asset paths hang off it)", set: str(func(c *Config) *string { return &c.GrokBaseURL })},
	{Name: "GROK_ASSETS_URL", Help: "origin of Grok generated media and uploads (empty: assets. before the GROK_BASE_URL host, or GROK_BASE_URL for an IP or localhost)", set: str(func(c *Config) *string { return &c.GrokAssetsURL })},
	{Name: "GROK_CHAT_TRANSPORT", Default: "auto", Help: "Grok chat transport: rest, ws (WebSocket gateway) or auto (gateway, REST for a session whose upgrade is refused)", set: str(func(c *Config) *string { return &c.GrokChatTransport })},
	{Name: "GROK_WS_FALLBACK_TTL", Default: "30m", Help: "how long auto keeps a session on REST after its WebSocket upgrade was refused, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.GrokWSFallbackTTL })},
	{Name: "GROK_MODEL_SELECTOR", Default: "modeId", Help: "how a Grok chat names its model: modeId (2026-03 on), modelName+modelMode (2025-07 to 2026-03) or modelName (2025)", set: str(func(c *Config) *string { return &c.GrokModelSelector })},
	{Name: "GROK_STATSIG_MODE", Default: "computed", Help: "x-statsig-id header: computed, fixed (GROK_STATSIG_VALUE), signer (GROK_STATSIG_SIGNER_URL), fallback or none", set: str(func(c *Config) *string { return &c.GrokStatsigMode })},
	{Name: "GROK_STATSIG_VALUE", Secret: true, Help: "x-statsig-id value for fixed; base64 verification key of the page for computed and signer", set: secretValue(func(c *Config) *secret.Value { return &c.GrokStatsigValue })},
	{Name: "GROK_STATSIG_SIGNER_URL", Help: "http(s) URL of the x-statsig-id signer service for GROK_STATSIG_MODE=signer", set: str(func(c *Config) *string { return &c.GrokStatsigSignerURL })},
	{Name: "GROK_USER_AGENT", Help: "User-Agent sent to Grok (empty: desktop Chrome of the TLS profile's version); must match the one that earned any cf_clearance", set: str(func(c *Config) *string { return &c.GrokUserAgent })},
	{Name: "GROK_CLIENT_HINTS", Help: "Sec-Ch-Ua header sent to Grok (empty: derived from the user agent)", set: str(func(c *Config) *string { return &c.GrokClientHints })},
	{Name: "GROK_TLS_PROFILE", Default: "chrome", Help: "TLS and HTTP/2 fingerprint toward Grok: chrome (newest known), chrome_133, chrome_131, chrome_124, chrome_120, chrome_117 or go", set: str(func(c *Config) *string { return &c.GrokTLSProfile })},
	{Name: "GROK_PROXY_URL", Secret: true, Help: "outbound proxy (http, https or socks5 URL) of Grok sessions without their own (empty: direct)", set: secretValue(func(c *Config) *secret.Value { return &c.GrokProxyURL })},
	{Name: "XAI_BASE_URL", Default: "https://api.x.ai/v1", Help: "base URL of the official xAI API", set: str(func(c *Config) *string { return &c.XAIBaseURL })},
	{Name: "XAI_HTTP2_CLEARTEXT", Default: "false", Help: "speak HTTP/2 without TLS to an http:// XAI_BASE_URL, such as a local relay that accepts it (https URLs use HTTP/2 anyway)", set: boolean(func(c *Config) *bool { return &c.XAIHTTP2Cleartext })},
	{Name: "LOG_LEVEL", Default: "info", Help: "debug, info, warn or error", set: str(func(c *Config) *string { return &c.LogLevel })},
	{Name: "LOG_FORMAT", Default: "json", Help: "json or text", set: str(func(c *Config) *string { return &c.LogFormat })},
	{Name: "LOG_FLUSH_INTERVAL", Default: "100ms", Help: "longest time a log line of level info or below waits in the buffer before it is written, a Go duration; warnings and errors flush at once (0: write every line at once)", set: duration(func(c *Config) *time.Duration { return &c.LogFlushInterval })},
	{Name: "METRICS_ENABLED", Default: "true", Help: "serve Prometheus metrics on /metrics", set: boolean(func(c *Config) *bool { return &c.MetricsEnabled })},
	{Name: "SENTRY_DSN", Secret: true, Help: "Sentry DSN for error reports (empty: off)", set: secretValue(func(c *Config) *secret.Value { return &c.SentryDSN })},
	{Name: "SENTRY_ENVIRONMENT", Help: "environment name on error reports, e.g. production (empty: none)", set: str(func(c *Config) *string { return &c.SentryEnvironment })},
	{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Help: "base http(s) URL of an OTLP/HTTP collector for request traces, e.g. http://127.0.0.1:4318 (empty: off)", set: str(func(c *Config) *string { return &c.OTLPEndpoint })},
	{Name: "READY_REQUIRES_SESSION", Default: "true", Help: "answer /readyz with 503 until at least one session is healthy", set: boolean(func(c *Config) *bool { return &c.ReadyRequiresSession })},
	{Name: "USER_RATE_LIMIT_PER_MINUTE", Default: "60", Help: "requests per minute for users without their own limit", set: integer(func(c *Config) *int { return &c.UserRateLimitPerMinute })},
	{Name: "AUTH_FAILURE_LIMIT_PER_MINUTE", Default: "20", Help: "failed authentications per client address per minute before 429 (0: no limit)", set: integer(func(c *Config) *int { return &c.AuthFailureLimitPerMinute })},
	{Name: "RATE_LIMIT_FAIL_MODE", Default: "open", Help: "while Redis is unreachable: open (each replica limits on its own) or closed (503)", set: str(func(c *Config) *string { return &c.RateLimitFailMode })},
	{Name: "REDIS_KEY_PREFIX", Default: "grokproxy:", Help: "prefix of every Redis key the rate limits write", set: str(func(c *Config) *string { return &c.RedisKeyPrefix })},
	{Name: "SESSION_ROTATION_THRESHOLD", Default: "500", Help: "requests one session may serve per rotation window (0: no cap)", set: integer(func(c *Config) *int { return &c.SessionRotationThreshold })},
	{Name: "SESSION_ROTATION_WINDOW", Default: "24h", Help: "rotation window, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.SessionRotationWindow })},
	{Name: "SESSION_MAX_AGE_HOURS", Default: "24", Help: "hours without a successful probe before the health check probes a session", set: hours(func(c *Config) *time.Duration { return &c.SessionMaxAge })},
	{Name: "SESSION_FAILURE_THRESHOLD", Default: "0.2", Help: "failure rate (0-1) over the failure window that quarantines a session", set: float(func(c *Config) *float64 { return &c.SessionFailureThreshold })},
	{Name: "SESSION_FAILURE_WINDOW", Default: "20", Help: "requests in the failure-rate window", set: integer(func(c *Config) *int { return &c.SessionFailureWindow })},
	{Name: "SESSION_RATE_LIMIT_PER_SECOND", Default: "10", Help: "requests per second per session (token bucket)", set: float(func(c *Config) *float64 { return &c.SessionRateLimitPerSecond })},
	{Name: "SESSION_HEALTH_CHECK_INTERVAL", Default: "30s", Help: "period of the session health check, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.SessionHealthCheckInterval })},
	{Name: "SESSION_DEFAULT_COOLDOWN", Default: "60s", Help: "rest after a 429 whose reset time is unknown, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.SessionDefaultCooldown })},
	{Name: "CIRCUIT_COOLDOWN", Default: "30s", Help: "how long an open circuit (provider or outbound route) fails fast before one trial call, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.CircuitCooldown })},
	{Name: "MAX_ATTEMPTS", Default: "3", Help: "upstream tries per request, on different sessions", set: integer(func(c *Config) *int { return &c.MaxAttempts })},
	{Name: "IMAGE_URL_TTL", Default: "1h", Help: "how long an image link of /v1/images/generations stays valid, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.ImageURLTTL })},
	{Name: "REQUEST_TIMEOUT", Default: "5m", Help: "deadline of one request, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.RequestTimeout })},
	{Name: "SHUTDOWN_TIMEOUT", Default: "30s", Help: "how long shutdown waits for streams to finish, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{Name: "MAX_BODY_BYTES", Default: "10485760", Help: "request body cap in bytes", set: int64Value(func(c *Config) *int64 { return &c.MaxBodyBytes })},
	{Name: "MAX_MESSAGES", Default: "2048", Help: "messages allowed in one chat request", set: integer(func(c *Config) *int { return &c.MaxMessages })},
	{Name: "MAX_PROMPT_BYTES", Default: "4194304", Help: "text of all messages of one chat request, in bytes", set: integer(func(c *Config) *int { return &c.MaxPromptBytes })},
	{Name: "MAX_HEADER_BYTES", Default: "65536", Help: "request line and headers of one request, in bytes; more gets 431", set: integer(func(c *Config) *int { return &c.MaxHeaderBytes })},
	{Name: "MAX_HEADER_COUNT", Default: "100", Help: "header fields in one request; more gets 431", set: integer(func(c *Config) *int { return &c.MaxHeaderCount })},
	{Name: "MAX_IN_FLIGHT", Default: "1024", Help: "requests served at once; the excess gets 503 with Retry-After (0: no cap)", set: integer(func(c *Config) *int { return &c.MaxInFlight })},
	{Name: "GC_HEADROOM_MB", Default: "20", Help: "MiB the heap may grow between garbage collections while the live heap is smaller; fewer collections for a bounded amount of memory (0: Go's default; a GOGC variable also turns it off)", set: integer(func(c *Config) *int { return &c.GCHeadroomMB })},
	{Name: "READ_HEADER_TIMEOUT", Default: "10s", Help: "time a client has to send the request headers, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.ReadHeaderTimeout })},
	{Name: "READ_TIMEOUT", Default: "60s", Help: "time a client has to send the whole request, body included, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.ReadTimeout })},
	{Name: "IDLE_TIMEOUT", Default: "120s", Help: "time a keep-alive connection may sit idle between requests, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.IdleTimeout })},
	{Name: "STREAM_WRITE_TIMEOUT", Default: "30s", Help: "time one write to a client may block before the response is cut, a Go duration (0: no limit)", set: duration(func(c *Config) *time.Duration { return &c.StreamWriteTimeout })},
	{Name: "CORS_ALLOWED_ORIGINS", Default: "*", Help: "origins allowed by CORS, comma-separated (*: any)", set: list(func(c *Config) *[]string { return &c.CORSAllowedOrigins })},
	{Name: "IP_ALLOWLIST", Help: "CIDRs allowed on /v1 and health routes, comma-separated (empty: all)", set: prefixes(func(c *Config) *[]netip.Prefix { return &c.IPAllowlist })},
	{Name: "ADMIN_IP_ALLOWLIST", Help: "CIDRs allowed on /admin, comma-separated (empty: all)", set: prefixes(func(c *Config) *[]netip.Prefix { return &c.AdminIPAllowlist })},
	{Name: "TRUSTED_PROXIES", Help: "CIDRs of proxies whose X-Forwarded-For is believed", set: prefixes(func(c *Config) *[]netip.Prefix { return &c.TrustedProxies })},
	{Name: "STORE_CONTENT", Default: "full", Help: "prompt and response storage: full, redacted (PII scrubbed) or none", set: str(func(c *Config) *string { return &c.StoreContent })},
	{Name: "ENCRYPT_CONTENT", Default: "false", Help: "encrypt stored prompts and responses with the keyring", set: boolean(func(c *Config) *bool { return &c.EncryptContent })},
	{Name: "AUDIT_SPOOL_PATH", Default: "grokproxy-audit.spool", Help: "local file that keeps audit records while the store is unreachable", set: str(func(c *Config) *string { return &c.AuditSpoolPath })},
	{Name: "AUDIT_SPOOL_MAX_BYTES", Default: "268435456", Help: "audit spool size cap in bytes", set: int64Value(func(c *Config) *int64 { return &c.AuditSpoolMaxBytes })},
	{Name: "AUDIT_FLUSH_INTERVAL", Default: "200ms", Help: "audit batch flush period, a Go duration; a kill -9 loses at most this much", set: duration(func(c *Config) *time.Duration { return &c.AuditFlushInterval })},
	{Name: "AUDIT_SPOOL_FULL_POLICY", Default: "refuse", Help: "when the spool is full: refuse (503 new requests) or drop_oldest", set: str(func(c *Config) *string { return &c.AuditSpoolFull })},
	{Name: "RETENTION_GENERATIONS_DAYS", Default: "90", Help: "days generations (request records) are kept (0: forever)", set: integer(func(c *Config) *int { return &c.RetentionGenerationsDays })},
	{Name: "RETENTION_DEAD_SESSIONS_DAYS", Default: "7", Help: "days expired and revoked sessions are kept (0: forever)", set: integer(func(c *Config) *int { return &c.RetentionDeadSessionsDays })},
	{Name: "RETENTION_INTERVAL", Default: "1h", Help: "period of the retention job in serve, a Go duration", set: duration(func(c *Config) *time.Duration { return &c.RetentionInterval })},
	{Name: "BCRYPT_COST", Default: "12", Help: "bcrypt cost of new API key hashes", set: integer(func(c *Config) *int { return &c.BcryptCost })},
	{Name: "MODELS_FILE", Help: "YAML file that replaces the built-in model table", set: str(func(c *Config) *string { return &c.ModelsFile })},
}

func str(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *field(c) = v; return nil }
}

func integer(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		*field(c) = n
		return nil
	}
}

func int64Value(field func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		*field(c) = n
		return nil
	}
}

func float(field func(*Config) *float64) func(*Config, string) error {
	return func(c *Config, v string) error {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		*field(c) = f
		return nil
	}
}

func boolean(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*field(c) = b
		return nil
	}
}

func duration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			return fmt.Errorf("%q is not a duration such as 30s or 5m", v)
		}
		*field(c) = d
		return nil
	}
}

func hours(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		h, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || h < 0 {
			return fmt.Errorf("%q is not a number of hours", v)
		}
		*field(c) = time.Duration(h * float64(time.Hour))
		return nil
	}
}

func list(field func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error { *field(c) = splitList(v); return nil }
}

func secretValue(field func(*Config) *secret.Value) func(*Config, string) error {
	return func(c *Config, v string) error { *field(c) = secret.New(strings.TrimSpace(v)); return nil }
}

func secretList(field func(*Config) *[]secret.Value) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []secret.Value
		for _, s := range splitList(v) {
			out = append(out, secret.New(s))
		}
		*field(c) = out
		return nil
	}
}

func prefixes(field func(*Config) *[]netip.Prefix) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []netip.Prefix
		for _, s := range splitList(v) {
			p, err := parsePrefix(s)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		*field(c) = out
		return nil
	}
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
