package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/secret"
)

// sharedRedisURL returns the URL of the shared test Redis. It fails under
// CI when Redis is unreachable and skips elsewhere.
func sharedRedisURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Redis is required under CI: %v", err)
		}
		t.Skipf("Redis unreachable: %v", err)
	}
	return url
}

// startReplicas starts n gateways on one PostgreSQL schema and one Redis
// URL, with a key prefix of their own, behind one emulator. The first
// creates the admin key and adds two sessions; the others start after
// that and load them from the store.
func startReplicas(t *testing.T, n int, redisURL string, opts ...gatewayOption) []*gateway {
	t.Helper()
	ecfg := grokweb.Config{Accounts: []grokweb.Account{{SSO: ssoA}, {SSO: ssoB}}, Chunks: 20}
	base := config.Default()
	base.Host, base.Port = "127.0.0.1", 0
	base.APIPasswords = []secret.Value{secret.New(userKey)}
	base.BcryptCost, base.WeakBcryptForTests = 4, true
	base.LogLevel, base.LogFormat = "debug", "json"
	base.SessionHealthCheckInterval = time.Hour
	base.ShutdownTimeout = 5 * time.Second
	base.DatabaseURL = postgresSchema(t)
	base.EncryptionKey = secret.New(keyring.Generate())
	base.RedisURL = redisURL
	base.RedisKeyPrefix = "grokproxy-e2e:" + uuid.NewString() + ":"
	for _, o := range opts {
		o(&base, &ecfg)
	}
	emu := grokweb.New(ecfg)
	es := httptest.NewServer(emu)
	t.Cleanup(es.Close)
	base.GrokBaseURL = es.URL

	var gws []*gateway
	for i := range n {
		cfg := base
		cfg.AuditSpoolPath = filepath.Join(t.TempDir(), "audit.spool")
		if err := cfg.Validate(); err != nil {
			t.Fatalf("config: %v", err)
		}
		g := &gateway{t: t, logs: &syncBuffer{}, Emu: emu, EmuURL: es.URL}
		ctx, cancel := context.WithCancel(context.Background())
		a, err := app.New(ctx, cfg, observe.NewLogger(g.logs, cfg.LogLevel, cfg.LogFormat))
		if err != nil {
			cancel()
			t.Fatalf("start replica %d: %v", i, err)
		}
		g.App = a
		if i == 0 {
			if g.AdminKey, err = a.BootstrapAdmin(ctx); err != nil || g.AdminKey == "" {
				t.Fatalf("bootstrap admin key: %v", err)
			}
		} else {
			g.AdminKey = gws[0].AdminKey
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g.URL = "http://" + ln.Addr().String()
		a.Start(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.Serve(ctx, ln)
		}()
		t.Cleanup(func() {
			cancel()
			<-done
			if err := a.Close(); err != nil {
				t.Errorf("close replica: %v", err)
			}
			g.assertNoSecretsLogged()
		})
		if i == 0 {
			for _, sso := range []string{ssoA, ssoB} {
				res := g.admin(http.MethodPost, "/admin/sessions", map[string]any{"cookie_text": "sso=" + sso, "provider": "grok"})
				if res.Status != http.StatusCreated {
					t.Fatalf("add session: %d %s", res.Status, res.Body)
				}
			}
		}
		gws = append(gws, g)
	}
	return gws
}

func TestReplicasShareLimits(t *testing.T) {
	redisURL := sharedRedisURL(t)
	// The user has no limit of its own, so the default of 60 per minute
	// applies, as on a fresh deployment.
	const limit = 60
	gws := startReplicas(t, 3, redisURL,
		withEmulator(func(c *grokweb.Config) { c.TokenDelay = 25 * time.Millisecond }),
		withConfig(func(c *config.Config) { c.UserRateLimitPerMinute = limit }))
	_, key := gws[0].createUser(map[string]any{"name": "default-limit"})

	t.Run("user limit holds over all replicas", func(t *testing.T) {
		var admitted, refused atomic.Int64
		var wg sync.WaitGroup
		for i := range limit + limit/2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := gws[i%len(gws)].do(http.MethodGet, "/v1/models", key, nil)
				switch res.Status {
				case http.StatusOK:
					admitted.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
					// Checked here with Errorf: Fatal must not run outside
					// the test goroutine.
					if !strings.Contains(string(res.Body), `"rate_limit_exceeded"`) ||
						res.Header.Get("Retry-After") == "" {
						t.Errorf("429 without rate_limit_exceeded or Retry-After: %v %s", res.Header, res.Body)
					}
				default:
					t.Errorf("status %d: %s", res.Status, res.Body)
				}
			}()
		}
		wg.Wait()
		if admitted.Load() != limit || refused.Load() != limit/2 {
			t.Errorf("admitted %d and refused %d over %d replicas; want %d and %d",
				admitted.Load(), refused.Load(), len(gws), limit, limit/2)
		}
	})

	t.Run("revocation reaches every replica within a second", func(t *testing.T) {
		uid, fresh := gws[1].createUser(map[string]any{"name": "revoked"})
		for i, g := range gws {
			if res := g.do(http.MethodGet, "/v1/models", fresh, nil); res.Status != http.StatusOK {
				t.Fatalf("replica %d before revocation: %d %s", i, res.Status, res.Body)
			}
		}
		keys := gws[0].admin(http.MethodGet, "/admin/users/"+uid+"/keys", nil).json(t)["data"].([]any)
		keyID := keys[0].(map[string]any)["id"].(string)
		if res := gws[0].admin(http.MethodDelete, "/admin/keys/"+keyID, nil); res.Status != http.StatusOK {
			t.Fatalf("revoke: %d %s", res.Status, res.Body)
		}
		revoked := time.Now()
		for i, g := range gws {
			for {
				res := g.do(http.MethodGet, "/v1/models", fresh, nil)
				if res.Status == http.StatusUnauthorized {
					break
				}
				if time.Since(revoked) > time.Second {
					t.Fatalf("replica %d still accepts the key %v after revocation", i, time.Since(revoked))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})

	t.Run("concurrency cap holds over replicas", func(t *testing.T) {
		_, capped := gws[0].createUser(map[string]any{"name": "capped", "max_concurrent_per_key": 1})
		req, _ := http.NewRequest(http.MethodPost, gws[0].URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"grok-3","stream":true,"messages":[{"role":"user","content":"slow"}]}`))
		req.Header.Set("Authorization", "Bearer "+capped)
		slow, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Body.Close()
		for _, g := range gws[1:] {
			res := g.do(http.MethodGet, "/v1/models", capped, nil)
			assertError(t, res, http.StatusTooManyRequests, "rate_limit_error", "concurrency_limit_exceeded")
		}
	})
}

// redisProcess is a redis-server of the test's own on a free port, which
// the test may stop and start again.
type redisProcess struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startRedisProcess(t *testing.T) *redisProcess {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is required under CI: %v", err)
		}
		t.Skipf("redis-server not found: %v", err)
	}
	r := &redisProcess{t: t, port: freePort(t)}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisProcess) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisProcess) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.t.TempDir())
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port)})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			r.t.Fatal("redis-server did not answer within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *redisProcess) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// load sends requests with key to g until stop is closed and counts the
// responses by status.
func load(g *gateway, key string, stop <-chan struct{}) (counts func() map[int]int, wait func()) {
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 10 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodGet, g.URL+"/v1/models", nil)
			req.Header.Set("Authorization", "Bearer "+key)
			status := 0
			if res, err := client.Do(req); err == nil {
				status = res.StatusCode
				res.Body.Close()
			}
			mu.Lock()
			seen[status]++
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	counts = func() map[int]int {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[int]int, len(seen))
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
	return counts, wg.Wait
}

// metric returns the value of an unlabelled sample on /metrics.
func (g *gateway) metric(name string) string {
	g.t.Helper()
	res := g.do(http.MethodGet, "/metrics", "", nil)
	for _, line := range strings.Split(string(res.Body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	g.t.Fatalf("metric %s not on /metrics", name)
	return ""
}

// waitStatus polls /v1/models with key until its status is want.
func (g *gateway) waitStatus(key string, want int, within time.Duration) response {
	g.t.Helper()
	deadline := time.Now().Add(within)
	for {
		res := g.do(http.MethodGet, "/v1/models", key, nil)
		if res.Status == want {
			return res
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no %d within %v; last %d %s", want, within, res.Status, res.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRedisOutageFailOpen(t *testing.T) {
	rp := startRedisProcess(t)
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) {
		c.RedisURL = rp.url()
		c.RateLimitFailMode = "open"
	}))
	_, key := g.createUser(map[string]any{"rate_limit_per_minute": 100_000})
	_, small := g.createUser(map[string]any{"name": "small", "rate_limit_per_minute": 3})

	stop := make(chan struct{})
	counts, wait := load(g, key, stop)
	time.Sleep(200 * time.Millisecond)
	rp.stop()
	time.Sleep(500 * time.Millisecond)

	// Local limits apply while Redis is down.
	for i := range 3 {
		if res := g.do(http.MethodGet, "/v1/models", small, nil); res.Status != http.StatusOK {
			t.Fatalf("request %d during the outage: %d %s", i+1, res.Status, res.Body)
		}
	}
	res := g.do(http.MethodGet, "/v1/models", small, nil)
	assertError(t, res, http.StatusTooManyRequests, "rate_limit_error", "rate_limit_exceeded")
	if v := g.metric("grokproxy_ratelimit_fallback_active"); v != "1" {
		t.Errorf("grokproxy_ratelimit_fallback_active = %s during the outage, want 1", v)
	}
	if !strings.Contains(g.logs.String(), "rate limiter unavailable") {
		t.Error("no warning logged about the outage")
	}

	rp.start()
	deadline := time.Now().Add(10 * time.Second)
	for g.metric("grokproxy_ratelimit_fallback_active") != "0" {
		if time.Now().After(deadline) {
			t.Fatal("fallback still active 10s after Redis returned")
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wait()
	c := counts()
	for status, n := range c {
		if status != http.StatusOK {
			t.Errorf("%d answers with status %d under load; want only 200 (all: %v)", n, status, c)
		}
	}
	if c[http.StatusOK] < 10 {
		t.Errorf("only %d requests served under load", c[http.StatusOK])
	}
}

func TestRedisOutageFailClosed(t *testing.T) {
	rp := startRedisProcess(t)
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) {
		c.RedisURL = rp.url()
		c.RateLimitFailMode = "closed"
	}))
	_, key := g.createUser(map[string]any{"rate_limit_per_minute": 100_000})

	stop := make(chan struct{})
	counts, wait := load(g, key, stop)
	time.Sleep(200 * time.Millisecond)
	rp.stop()
	res := g.waitStatus(key, http.StatusServiceUnavailable, 5*time.Second)
	assertError(t, res, http.StatusServiceUnavailable, "server_error", "rate_limiter_unavailable")
	retryAfter(t, res)
	if v := g.metric("grokproxy_ratelimit_fallback_active"); v != "1" {
		t.Errorf("grokproxy_ratelimit_fallback_active = %s during the outage, want 1", v)
	}
	deadline := time.Now().Add(10 * time.Second)
	for counts()[http.StatusServiceUnavailable] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the load saw no 503 during the outage: %v", counts())
		}
		time.Sleep(20 * time.Millisecond)
	}

	rp.start()
	g.waitStatus(key, http.StatusOK, 10*time.Second)
	close(stop)
	wait()
	c := counts()
	for status, n := range c {
		if status != http.StatusOK && status != http.StatusServiceUnavailable {
			t.Errorf("%d answers with status %d under load; want 200 or 503 (all: %v)", n, status, c)
		}
	}
	if c[http.StatusServiceUnavailable] == 0 || c[http.StatusOK] == 0 {
		t.Errorf("load saw %v; want both 200 and 503", c)
	}
}
