// Package console drives the admin console in headless Chromium against a
// whole gateway over loopback, with the Grok web emulator upstream.
package console

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/observe"
)

// Upstream logins of the emulator; the console adds them as sessions.
const (
	ssoA = "sso-console-3a7d9c21e4f0b6"
	ssoB = "sso-console-8e1f2d3c4b5a69"
)

// gateway is one running gateway with its emulator.
type gateway struct {
	t        *testing.T
	URL      string
	App      *app.App
	AdminKey string
	logs     *syncBuffer
}

// startGateway starts the emulator and a gateway on SQLite with no
// session; the console adds them.
func startGateway(t *testing.T) *gateway {
	t.Helper()
	ecfg := grokweb.Config{Accounts: []grokweb.Account{{SSO: ssoA}, {SSO: ssoB}}, Chunks: 5}
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.BcryptCost, cfg.WeakBcryptForTests = 4, true
	cfg.AuditSpoolPath = filepath.Join(dir, "audit.spool")
	cfg.LogLevel, cfg.LogFormat = "debug", "json"
	cfg.SessionHealthCheckInterval = time.Hour
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.DatabaseURL = filepath.Join(dir, "grokproxy.db")

	emu := httptest.NewServer(grokweb.New(ecfg))
	t.Cleanup(emu.Close)
	cfg.GrokBaseURL = emu.URL
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}

	g := &gateway{t: t, logs: &syncBuffer{}}
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
		t.Fatalf("bootstrap admin key: %v", err)
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
	return g
}

// do sends one JSON request with key as bearer and decodes the JSON
// response body into out when out is not nil.
func (g *gateway) do(method, path, key string, body, out any) int {
	g.t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			g.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, g.URL+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			g.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return res.StatusCode
}

// waitGenerations polls the store until it holds at least want rows.
func (g *gateway) waitGenerations(want int64) {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n, err := g.App.Store.CountGenerations(context.Background())
		if err != nil {
			g.t.Fatal(err)
		}
		if n >= want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.t.Fatalf("the store holds fewer than %d generation rows after 10s", want)
}

// assertNoSecretsLogged fails when a credential or key appears in the
// gateway's log output.
func (g *gateway) assertNoSecretsLogged() {
	g.t.Helper()
	logs := g.logs.String()
	for _, s := range []string{ssoA, ssoB, g.AdminKey} {
		if s != "" && strings.Contains(logs, s) {
			g.t.Errorf("a secret appears in the log output: %.8s…", s)
		}
	}
}

// browser is one headless Chromium tab with the page problems it reported.
type browser struct {
	ctx context.Context

	mu       sync.Mutex
	problems []string // uncaught exceptions and console errors
}

// chromiumPath returns the Chromium binary. Under CI=true a missing binary
// fails the test; elsewhere it skips.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is required under CI; install it with apt-get install -y chromium")
	}
	t.Skip("chromium not found; install it with apt-get install -y chromium")
	return ""
}

// startBrowser starts Chromium with a fresh profile. On failure of t it
// saves a screenshot of the page into a folder that outlives the test and
// logs its path.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	b := &browser{ctx: ctx}
	// Console starts the browser; the messages are read until the tab ends.
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				b.report(m.String())
			}
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b.saveFailureShot(t)
		}
	})
	return b
}

func (b *browser) report(p string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, p)
}

// Problems returns what the page reported so far.
func (b *browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

func (b *browser) saveFailureShot(t *testing.T) {
	dir, err := os.MkdirTemp("", "console-failure-")
	if err != nil {
		t.Logf("no failure screenshot: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		dialogOpen: document.querySelector('#confirm')?.open,
		alert: document.querySelector('#alert')?.textContent,
		status: document.querySelector('#status')?.textContent,
		focused: document.activeElement?.outerHTML.slice(0, 200),
	})`))
	if err == nil {
		t.Logf("page state: %s", state)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("no failure screenshot: %v", err)
		return
	}
	path := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("no failure screenshot: %v", err)
		return
	}
	t.Logf("screenshot of the failed page: %s", path)
}

// run runs actions with a ceiling of 20 seconds, failing t with step in
// the message.
func (b *browser) run(t *testing.T, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}

// read runs one action that returns a value, with the ceiling of run.
func read[T any](t *testing.T, b *browser, step string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	return v
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
