// Command soak runs the gateway against the loopback Grok web emulator for
// a set time, with faults injected upstream and a mix of well-behaved,
// impatient and malformed clients. It then reports requests served, errors
// by kind, audit rows against admitted requests, and peak memory and
// goroutines.
//
// It is not part of `go test ./...`. Run it from the repository root:
//
//	go run ./bench/soak -duration 1m
//	go run ./bench/soak -duration 30m -database postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//		-restart-cmd 'runuser -u postgres -- pg_ctl -D /tmp/soakpg restart -m fast'
//
// The exit status is 1 when the audit rows do not match the admitted
// requests. Everything listens on 127.0.0.1 only.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/audit"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/secret"
)

// options are the command-line flags.
type options struct {
	heapProfile  string
	duration     time.Duration
	clients      int
	sessions     int
	database     string
	faultEvery   time.Duration
	restartEvery time.Duration
	restartCmd   string
	maxInFlight  int
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", time.Minute, "how long clients send requests, a Go duration")
	flag.IntVar(&o.clients, "clients", 16, "concurrent clients")
	flag.IntVar(&o.sessions, "sessions", 8, "emulated Grok accounts added as sessions")
	flag.StringVar(&o.database, "database", "", "DATABASE_URL of the gateway (empty: a SQLite file in a temporary directory)")
	flag.DurationVar(&o.faultEvery, "fault-every", 3*time.Second, "period between upstream fault changes, a Go duration")
	flag.DurationVar(&o.restartEvery, "restart-every", 2*time.Minute, "period between runs of -restart-cmd, a Go duration")
	flag.StringVar(&o.restartCmd, "restart-cmd", "", "shell command that restarts the store, e.g. pg_ctl restart (empty: no restarts)")
	flag.IntVar(&o.maxInFlight, "max-in-flight", 64, "MAX_IN_FLIGHT of the gateway; 0 means no cap")
	flag.StringVar(&o.heapProfile, "heap-profile", "", "file to write a heap profile to when the clients stop (empty: none)")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

const clientKey = "soak-client-key-5e1f"

func run(o options, out io.Writer) error {
	dir, err := os.MkdirTemp("", "grokproxy-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	accounts := make([]grokweb.Account, o.sessions)
	for i := range accounts {
		accounts[i] = grokweb.Account{SSO: fmt.Sprintf("soak-sso-%02d-%s", i, keyring.Generate()[:12])}
	}
	emu := grokweb.New(grokweb.Config{Accounts: accounts, Chunks: 20, TokenDelay: 2 * time.Millisecond})
	emuSrv := httptest.NewServer(emu)
	defer emuSrv.Close()

	cfg, err := gatewayConfig(o, dir, emuSrv.URL)
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := observe.NewLogger(logFile, cfg.LogLevel, cfg.LogFormat)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gw, err := startGateway(ctx, cfg, log)
	if err != nil {
		return err
	}
	for _, acc := range accounts {
		if err := gw.addSession(acc.SSO); err != nil {
			gw.stop()
			return err
		}
	}

	samples := newSampler()
	stopSampler := samples.run(200 * time.Millisecond)
	tally := newTally()
	deadline := time.Now().Add(o.duration)
	stopFaults := injectFaults(emu, accounts, o.faultEvery, deadline)
	stopRestarts := restartStore(o, deadline, log)
	runClients(gw.url, o.clients, deadline, tally)
	if o.heapProfile != "" {
		if err := writeHeapProfile(o.heapProfile); err != nil {
			fmt.Fprintln(out, "heap profile:", err)
		}
	}
	stopRestarts()
	stopFaults()
	emu.ClearFaults()

	if err := gw.stop(); err != nil {
		fmt.Fprintln(out, "gateway shutdown:", err)
	}
	rows, err := countRows(cfg, log)
	stopSampler()
	if err != nil {
		return err
	}
	report(out, o, tally, samples, rows)
	if rows != tally.admitted() {
		return fmt.Errorf("audit rows %d differ from admitted requests %d", rows, tally.admitted())
	}
	return nil
}

func gatewayConfig(o options, dir, emuURL string) (config.Config, error) {
	cfg := config.Default()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.GrokBaseURL = emuURL
	cfg.APIPasswords = []secret.Value{secret.New(clientKey)}
	cfg.AuditSpoolPath = filepath.Join(dir, "audit.spool")
	cfg.LogLevel = "warn"
	cfg.UserRateLimitPerMinute = 1_000_000
	cfg.SessionHealthCheckInterval = 5 * time.Second
	cfg.SessionDefaultCooldown = 2 * time.Second
	// The soak sends far more than real accounts allow; the emulator's
	// faults, not the rotation cap, should decide when sessions rest.
	cfg.SessionRotationThreshold = 0
	cfg.SessionRateLimitPerSecond = 100
	cfg.RequestTimeout = 30 * time.Second
	cfg.StreamWriteTimeout = 5 * time.Second
	cfg.MaxInFlight = o.maxInFlight
	cfg.DatabaseURL = filepath.Join(dir, "grokproxy.db")
	if o.database != "" {
		cfg.DatabaseURL = o.database
	}
	if cfg.IsPostgres() {
		cfg.EncryptionKey = secret.New(keyring.Generate())
	}
	return cfg, cfg.Validate()
}

// gateway is the gateway under test, serving on a loopback port.
type gateway struct {
	app      *app.App
	url      string
	adminKey string
	cancel   context.CancelFunc
	done     chan error
}

func startGateway(ctx context.Context, cfg config.Config, log *slog.Logger) (*gateway, error) {
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	adminKey, err := a.BootstrapAdmin(ctx)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("bootstrap admin key: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	gw := &gateway{app: a, url: "http://" + ln.Addr().String(), adminKey: adminKey, cancel: cancel, done: make(chan error, 1)}
	a.Start(ctx)
	go func() { gw.done <- a.Serve(ctx, ln) }()
	return gw, nil
}

// stop shuts the gateway down gracefully; the audit writer flushes.
func (g *gateway) stop() error {
	g.cancel()
	<-g.done
	return g.app.Close()
}

func (g *gateway) addSession(sso string) error {
	body := fmt.Sprintf(`{"cookie_text":"sso=%s","provider":"grok"}`, sso)
	req, err := http.NewRequest(http.MethodPost, g.url+"/admin/sessions", stringReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+g.adminKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("add session: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		return fmt.Errorf("add session: status %d", res.StatusCode)
	}
	return nil
}

// countRows reopens the store after shutdown and counts the audit rows.
func countRows(cfg config.Config, log *slog.Logger) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := app.OpenStore(ctx, cfg, log)
	if err != nil {
		return 0, fmt.Errorf("reopen store: %w", err)
	}
	defer st.Close()
	// Records that shutdown spooled reach the store when the next gateway
	// starts; an audit writer on the same spool replays them the same way.
	w := audit.New(audit.Config{SpoolPath: cfg.AuditSpoolPath, SpoolMaxBytes: cfg.AuditSpoolMaxBytes}, st, nil, log)
	runCtx, stopRun := context.WithCancel(ctx)
	go w.Run(runCtx)
	for w.Stats().SpoolRecords > 0 && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	stopRun()
	if err := w.Close(ctx); err != nil {
		return 0, fmt.Errorf("replay the audit spool: %w", err)
	}
	return st.CountGenerations(ctx)
}

// restartStore runs the restart command every restartEvery until deadline.
// It returns a function that stops the loop and waits for it.
func restartStore(o options, deadline time.Time, log *slog.Logger) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		if o.restartCmd == "" {
			return
		}
		t := time.NewTicker(o.restartEvery)
		defer t.Stop()
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if err := exec.Command("sh", "-c", o.restartCmd).Run(); err != nil {
				log.Warn("store restart command failed", "error", err)
			}
		}
	}()
	return func() { close(stop); <-done }
}

// writeHeapProfile writes the heap profile of this process, gateway and
// emulator included, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
