// Package e2e drives a whole gateway over loopback: the Grok web emulator
// upstream, the real stores, and official OpenAI client libraries as the
// callers.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/secret"
)

// Secrets every test run uses; the log check looks for each of them.
const (
	ssoA     = "sso-alpha-7f3c2a91d4e8b6c0"
	ssoB     = "sso-bravo-1e9d8c7b6a5f4e3d"
	userKey  = "user-key-e2e-4b1d9a"
	userKey2 = "user-key-e2e-8c2e0f"
)

// gateway is one running gateway with its emulator.
type gateway struct {
	t        *testing.T
	URL      string // http://127.0.0.1:port
	App      *app.App
	Emu      *grokweb.Server
	EmuURL   string
	AdminKey string
	logs     *syncBuffer
}

type storeKind string

const (
	sqliteStore   storeKind = "sqlite"
	postgresStore storeKind = "postgres"
)

// forEachStore runs fn once per store kind as subtests.
func forEachStore(t *testing.T, fn func(t *testing.T, kind storeKind)) {
	for _, k := range []storeKind{sqliteStore, postgresStore} {
		t.Run(string(k), func(t *testing.T) { fn(t, k) })
	}
}

type gatewayOption func(*config.Config, *grokweb.Config)

func withConfig(f func(*config.Config)) gatewayOption {
	return func(c *config.Config, _ *grokweb.Config) { f(c) }
}

func withEmulator(f func(*grokweb.Config)) gatewayOption {
	return func(_ *config.Config, e *grokweb.Config) { f(e) }
}

// startGateway starts the emulator and a gateway on the given store, with
// two Grok web sessions added through the admin API.
func startGateway(t *testing.T, kind storeKind, opts ...gatewayOption) *gateway {
	t.Helper()
	ecfg := grokweb.Config{Accounts: []grokweb.Account{{SSO: ssoA}, {SSO: ssoB}}, Chunks: 20}
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.APIPasswords = []secret.Value{secret.New(userKey), secret.New(userKey2)}
	cfg.BcryptCost, cfg.WeakBcryptForTests = 4, true
	cfg.AuditSpoolPath = filepath.Join(dir, "audit.spool")
	cfg.LogLevel, cfg.LogFormat = "debug", "json"
	cfg.SessionHealthCheckInterval = time.Hour
	cfg.UserRateLimitPerMinute = 10_000
	cfg.ShutdownTimeout = 5 * time.Second
	// Most tests read the REST chat requests that the emulator records;
	// those over the WebSocket gateway set the transport with an option.
	cfg.GrokChatTransport = "rest"
	switch kind {
	case sqliteStore:
		cfg.DatabaseURL = filepath.Join(dir, "grokproxy.db")
	case postgresStore:
		cfg.DatabaseURL = postgresSchema(t)
		cfg.EncryptionKey = secret.New(keyring.Generate())
	}
	for _, o := range opts {
		o(&cfg, &ecfg)
	}

	g := &gateway{t: t, logs: &syncBuffer{}}
	g.Emu = grokweb.New(ecfg)
	emu := httptest.NewServer(g.Emu)
	t.Cleanup(emu.Close)
	g.EmuURL = emu.URL
	cfg.GrokBaseURL = emu.URL
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}

	log := observe.NewLogger(g.logs, cfg.LogLevel, cfg.LogFormat)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("start gateway: %v", err)
	}
	g.App = a
	g.AdminKey, err = a.BootstrapAdmin(ctx)
	if err != nil || g.AdminKey == "" {
		t.Fatalf("bootstrap admin key: %q %v", g.AdminKey, err)
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
			t.Errorf("close gateway: %v", err)
		}
		g.assertNoSecretsLogged()
	})

	for _, sso := range []string{ssoA, ssoB} {
		res := g.admin(http.MethodPost, "/admin/sessions", map[string]any{"cookie_text": "sso=" + sso, "provider": "grok"})
		if res.Status != http.StatusCreated {
			t.Fatalf("add session: %d %s", res.Status, res.Body)
		}
	}
	return g
}

// postgresSchema creates a fresh schema in the test database and returns a
// DATABASE_URL whose search_path points at it. It fails under CI when
// PostgreSQL is unreachable and skips elsewhere.
func postgresSchema(t *testing.T) string {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required under CI: %v", err)
		}
		t.Skipf("PostgreSQL unreachable: %v", err)
	}
	defer conn.Close(context.Background())
	schema := fmt.Sprintf("e2e_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// response is a raw HTTP answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// do sends one request with key as bearer (none when empty).
func (g *gateway) do(method, path, key string, body any, header ...string) response {
	g.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			g.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, g.URL+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		g.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: data}
}

func (g *gateway) admin(method, path string, body any) response {
	g.t.Helper()
	return g.do(method, path, g.AdminKey, body)
}

// waitGenerations polls the store until it holds want rows, failing after
// a generous ceiling.
func (g *gateway) waitGenerations(want int64) {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var n int64
	for time.Now().Before(deadline) {
		var err error
		n, err = g.App.Store.CountGenerations(context.Background())
		if err != nil {
			g.t.Fatal(err)
		}
		if n == want {
			return
		}
		if n > want {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.t.Fatalf("generations rows: got %d, want %d", n, want)
}

// assertNoSecretsLogged fails when any credential or key appears in the
// gateway's log output.
func (g *gateway) assertNoSecretsLogged() {
	g.t.Helper()
	logs := g.logs.String()
	for _, s := range []string{ssoA, ssoB, userKey, userKey2, g.AdminKey} {
		if s != "" && strings.Contains(logs, s) {
			g.t.Errorf("a secret appears in the log output: %.8s…", s)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
