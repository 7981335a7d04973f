package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/grokproxy/grokproxy/internal/keyring"
)

// Model ids the clients ask for: one served only by xai sessions, one only
// by grok sessions, so that neither gateway run tries the other provider.
const (
	modelXAI  = "grok-4-fast-non-reasoning"
	modelGrok = "grok-web-fast"
)

const modelTable = `models:
  - id: grok-4-fast-non-reasoning
    kind: chat
    routes: [{provider: xai, upstream: grok-4-fast-non-reasoning}]
  - id: grok-web-fast
    kind: chat
    routes: [{provider: grok, upstream: fast}]
`

// adminKey is the static admin key of the gateways under test, used only
// to add sessions and the benchmark user on loopback.
const adminKey = "bench-admin-key-not-secret"

// environment holds what every run shares.
type environment struct {
	o        options
	dir      string
	encKey   string
	keys     []string          // emulator API keys, also the xai sessions
	ssos     []string          // emulator accounts, also the grok sessions
	userKeys map[string]string // gateway API key by system

	mu       sync.Mutex // guards profiles, which saveProfile may append from a goroutine
	profiles []profile
}

// profile is one saved gateway profile and its top entries.
type profile struct {
	scenario, kind, path, top string
}

func newEnvironment(ctx context.Context, o options) (*environment, error) {
	dir, err := os.MkdirTemp("", "grokproxy-bench-")
	if err != nil {
		return nil, err
	}
	e := &environment{o: o, dir: dir, encKey: keyring.Generate(), userKeys: make(map[string]string)}
	for i := range o.sessions {
		e.keys = append(e.keys, fmt.Sprintf("bench-xai-key-%03d", i))
		e.ssos = append(e.ssos, fmt.Sprintf("bench-sso-%03d", i))
	}
	if err := os.WriteFile(filepath.Join(dir, "models.yaml"), []byte(modelTable), 0o644); err != nil {
		return nil, err
	}
	for _, sys := range []string{sysGateway, sysGatewayGrok, sysGatewayRedis} {
		if err := resetSchema(ctx, o.database, schemaOf(sys)); err != nil {
			return nil, err
		}
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *environment) close() { os.RemoveAll(e.dir) }

func schemaOf(sys string) string { return "bench_" + strings.ReplaceAll(sys, "-", "_") }

func resetSchema(ctx context.Context, database, schema string) error {
	conn, err := pgx.Connect(ctx, database)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE; CREATE SCHEMA "+schema)
	return err
}

func ping(ctx context.Context, database string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, database)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

func withSearchPath(database, schema string) string {
	sep := "?"
	if strings.Contains(database, "?") {
		sep = "&"
	}
	return database + sep + "search_path=" + url.QueryEscape(schema)
}

// measure runs one scenario against one system with fresh processes.
func (e *environment) measure(ctx context.Context, sc scenario, sys string) measurement {
	m := measurement{scenario: sc, system: sys}
	provider := "xai"
	if sys == sysGatewayGrok {
		provider = "grok"
	}
	upstream, upAddr, err := e.startEmulator(provider, sc)
	if err != nil {
		m.err = err
		return m
	}
	defer upstream.stop()

	target, key, model := upAddr, e.keys[0], modelXAI
	var sut *proc
	var debugAddr string
	switch sys {
	case sysProxy, sysRelay:
		sut, target, debugAddr, err = e.startBaseline(sys, upAddr, sc.h2c)
	case sysGateway, sysGatewayGrok, sysGatewayRedis:
		sut, target, debugAddr, err = e.startGateway(ctx, sys, provider, upAddr, sc.h2c)
		key = e.userKeys[sys]
		if sys == sysGatewayGrok {
			model = modelGrok
		}
	}
	if err != nil {
		m.err = err
		return m
	}
	defer sut.stop()

	if debugAddr != "" && sc.slow {
		m.heapIdle, _ = heapInUse(ctx, debugAddr)
	}
	sysPID := upstream.pid()
	if sut != nil {
		sysPID = sut.pid()
	}
	// CPU counts from the end of the warm-up, as the measured requests do,
	// so that start-up work (the first key's bcrypt check, dialing) is
	// not spread over the requests. The slow streams count the whole run.
	type cpuSample struct {
		sys, up float64
		pg      map[int]float64
	}
	sample := func() cpuSample { return cpuSample{cpuSeconds(sysPID), cpuSeconds(upstream.pid()), postgresCPU()} }
	from := sample()
	warm := make(chan cpuSample, 1)
	loadDone := make(chan struct{})
	if !sc.slow {
		go func() {
			select {
			case <-time.After(e.o.warmup):
				warm <- sample()
			case <-loadDone:
			}
		}()
	}
	m.load, m.heapStreams, err = e.runLoad(ctx, sc, sys, target, key, model, debugAddr)
	close(loadDone)
	m.cpuRequests = m.load.Total
	select {
	case from = <-warm:
		m.cpuRequests = m.load.Measured
	default:
	}
	m.cpuSystem = cpuSeconds(sysPID) - from.sys
	m.cpuUpstream = cpuSeconds(upstream.pid()) - from.up
	m.cpuPostgres = cpuSpent(from.pg, postgresCPU())
	m.peakRSS = peakRSSBytes(sysPID)
	if sut == nil {
		// Direct runs have no system in front: its figures are the
		// emulator's.
		m.cpuUpstream = 0
	}
	m.err = err
	if err == nil && debugAddr != "" && e.o.profileDir != "" && sc.clients == 256 && profiles(sys) {
		e.saveProfile(ctx, sc, sys, debugAddr, "allocs", "/debug/pprof/allocs")
	}
	return m
}

func (e *environment) startEmulator(provider string, sc scenario) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pace := "0s"
	if sc.slow {
		pace = e.o.slowPace.String()
	}
	var p *proc
	if provider == "grok" {
		p, err = start(e.dir, "grokweb-emulator", filepath.Join(e.o.bin, "grokweb-emulator"), nil,
			"-listen", addr, "-accounts", strings.Join(e.ssos, ","), "-chunks", "20", "-token-delay", pace, "-quiet")
	} else {
		p, err = start(e.dir, "xai-emulator", filepath.Join(e.o.bin, "xai-emulator"), nil,
			"-listen", addr, "-keys", strings.Join(e.keys, ","), "-chunks", "20", "-token-delay", pace, "-quiet")
	}
	if err != nil {
		return nil, "", err
	}
	if err := waitTCP(addr); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

// startBaseline starts a baseline and returns its origin and the address
// of its pprof listener.
func (e *environment) startBaseline(mode, upstream string, h2c bool) (*proc, string, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", "", err
	}
	dport, err := freePort()
	if err != nil {
		return nil, "", "", err
	}
	addr, debugAddr := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", dport)
	p, err := start(e.dir, "baseline-"+mode, filepath.Join(e.o.bin, "baseline"), nil,
		"-mode", mode, "-listen", addr, "-upstream", upstream, "-h2c="+strconv.FormatBool(h2c), "-debug", debugAddr)
	if err != nil {
		return nil, "", "", err
	}
	if err := waitTCP(addr); err != nil {
		p.stop()
		return nil, "", "", err
	}
	return p, "http://" + addr, debugAddr, nil
}

// profiles reports whether -profile profiles sys: the gateway, and the
// relay for comparison.
func profiles(sys string) bool { return sys == sysGateway || sys == sysRelay }

// startGateway starts the gateway with what a production operator turns
// on, and the first time for each system adds the sessions and a user key.
func (e *environment) startGateway(ctx context.Context, sys, provider, upstream string, h2c bool) (*proc, string, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", "", err
	}
	dport, err := freePort()
	if err != nil {
		return nil, "", "", err
	}
	env := []string{
		"HOST=127.0.0.1", "PORT=" + strconv.Itoa(port),
		"DATABASE_URL=" + withSearchPath(e.o.database, schemaOf(sys)),
		"GROKPROXY_ENCRYPTION_KEY=" + e.encKey,
		"ADMIN_API_KEYS=" + adminKey,
		"XAI_BASE_URL=" + upstream + "/v1",
		"XAI_HTTP2_CLEARTEXT=" + strconv.FormatBool(h2c),
		"GROK_BASE_URL=" + upstream,
		"MODELS_FILE=" + filepath.Join(e.dir, "models.yaml"),
		"LOG_LEVEL=info", "LOG_FORMAT=json", "METRICS_ENABLED=true",
		"USER_RATE_LIMIT_PER_MINUTE=1000000",
		"SESSION_RATE_LIMIT_PER_SECOND=1000000",
		"SESSION_ROTATION_THRESHOLD=0",
		"MAX_IN_FLIGHT=" + strconv.Itoa(max(1024, e.o.slowClients+1000, e.o.slowGrokClients+1000)),
		"AUDIT_SPOOL_PATH=" + filepath.Join(e.dir, sys+"-audit.spool"),
		"REDIS_URL=",
	}
	env = append(env, strings.Fields(e.o.gatewayEnv)...)
	if sys == sysGatewayRedis {
		env = append(env, "REDIS_URL="+e.o.redis, "REDIS_KEY_PREFIX=grokproxy-bench:")
	}
	debugAddr := fmt.Sprintf("127.0.0.1:%d", dport)
	p, err := start(e.dir, sys, filepath.Join(e.o.bin, "gateway"), env, "-debug", debugAddr)
	if err != nil {
		return nil, "", "", err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	fail := func(err error) (*proc, string, string, error) {
		p.stop()
		return nil, "", "", fmt.Errorf("%s: %w (log: %s)", sys, err, p.log.Name())
	}
	if err := waitHTTP(ctx, base+"/livez", http.StatusOK); err != nil {
		return fail(err)
	}
	if e.userKeys[sys] == "" {
		key, err := e.setUp(ctx, base, provider)
		if err != nil {
			return fail(err)
		}
		e.userKeys[sys] = key
	}
	if err := waitHTTP(ctx, base+"/readyz", http.StatusOK); err != nil {
		return fail(err)
	}
	return p, base, debugAddr, nil
}

// setUp adds every emulator account as a session and creates a user with
// a high rate limit and its key, through the admin API.
func (e *environment) setUp(ctx context.Context, base, provider string) (string, error) {
	var sessions []map[string]string
	for i := range e.keys {
		if provider == "grok" {
			sessions = append(sessions, map[string]string{"provider": "grok", "cookie_text": "sso=" + e.ssos[i] + "; sso-rw=" + e.ssos[i]})
		} else {
			sessions = append(sessions, map[string]string{"provider": "xai", "api_key": e.keys[i]})
		}
	}
	if err := adminCall(ctx, base, "POST", "/admin/sessions", map[string]any{"sessions": sessions}, nil); err != nil {
		return "", fmt.Errorf("add sessions: %w", err)
	}
	var user struct {
		ID string `json:"id"`
	}
	if err := adminCall(ctx, base, "POST", "/admin/users", map[string]any{"name": "bench", "rate_limit_per_minute": 1000000}, &user); err != nil {
		return "", fmt.Errorf("create user: %w", err)
	}
	var key struct {
		Key string `json:"key"`
	}
	if err := adminCall(ctx, base, "POST", "/admin/users/"+user.ID+"/keys", map[string]any{"name": "bench"}, &key); err != nil {
		return "", fmt.Errorf("create key: %w", err)
	}
	if key.Key == "" {
		return "", errors.New("create key: the response has no key")
	}
	return key.Key, nil
}

func adminCall(ctx context.Context, base, method, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %.300s", method, path, resp.Status, data)
	}
	if bytes.Contains(data, []byte(`"error":{`)) {
		return fmt.Errorf("%s %s: %.300s", method, path, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// runLoad runs bench/load and returns its result. For slow scenarios on a
// gateway it also reads the live heap once every client is streaming, and
// with -profile saves a heap profile then. For 256-client gateway runs with
// -profile it records a CPU profile over the measured time.
func (e *environment) runLoad(ctx context.Context, sc scenario, sys, target, key, model, debugAddr string) (loadResult, int64, error) {
	args := []string{"-url", target, "-key", key, "-model", model, "-clients", strconv.Itoa(sc.clients)}
	if sc.stream {
		args = append(args, "-stream")
	}
	if sc.slow {
		args = append(args, "-requests", "1", "-warmup", "0s", "-ramp", e.o.slowRamp.String(),
			"-duration", (e.o.slowRamp + time.Second).String(), "-read-delay", e.o.slowRead.String())
	} else {
		args = append(args, "-duration", e.o.duration.String(), "-warmup", e.o.warmup.String())
	}
	cmd := exec.CommandContext(ctx, filepath.Join(e.o.bin, "load"), args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return loadResult{}, 0, err
	}
	if err := cmd.Start(); err != nil {
		return loadResult{}, 0, err
	}

	profiled := make(chan struct{})
	if debugAddr != "" && e.o.profileDir != "" && sc.clients == 256 && profiles(sys) {
		go func() {
			defer close(profiled)
			time.Sleep(e.o.warmup)
			secs := max(1, int(e.o.duration.Seconds())-1)
			e.saveProfile(ctx, sc, sys, debugAddr, "cpu", "/debug/pprof/profile?seconds="+strconv.Itoa(secs))
		}()
	} else {
		close(profiled)
	}
	defer func() { <-profiled }()
	var heap int64
	var errText strings.Builder
	sc2 := bufio.NewScanner(stderr)
	for sc2.Scan() {
		line := sc2.Text()
		if line == "all clients streaming" {
			if debugAddr != "" && sc.slow {
				time.Sleep(time.Second)
				heap, _ = heapInUse(ctx, debugAddr)
				if e.o.profileDir != "" && sys == sysGateway {
					e.saveProfile(ctx, sc, sys, debugAddr, "heap", "/debug/pprof/heap")
				}
			}
			continue
		}
		errText.WriteString(line + "\n")
	}
	if err := cmd.Wait(); err != nil {
		return loadResult{}, heap, fmt.Errorf("load: %w: %s", err, strings.TrimSpace(errText.String()))
	}
	var res loadResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return loadResult{}, heap, fmt.Errorf("load output: %w", err)
	}
	return res, heap, nil
}

// heapInUse fetches the live heap from the gateway's debug listener.
func heapInUse(ctx context.Context, addr string) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/heap", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		HeapInuse int64 `json:"heap_inuse_bytes"`
	}
	err = json.NewDecoder(resp.Body).Decode(&v)
	return v.HeapInuse, err
}

// profileFocus selects the functions of the cumulative profile lists.
const profileFocus = `grokproxy|net/http\.\(\*Transport\)\.dial|regexp\.|encoding/json\.|pgx|log/slog\.`

// saveProfile fetches a pprof profile into the profile directory and, for
// the gateway, keeps the top entries that go tool pprof lists for the page.
// The relay's files are named after it, for comparison by hand.
func (e *environment) saveProfile(ctx context.Context, sc scenario, sys, debugAddr, kind, path string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+debugAddr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	name := sc.name
	if sys != sysGateway {
		name += "-" + sys
	}
	file := filepath.Join(e.o.profileDir, name+"-"+kind+".pb.gz")
	f, err := os.Create(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	io.Copy(f, resp.Body)
	f.Close()
	if sys != sysGateway {
		return
	}
	// The flat list names the leaf costs. The cumulative list, kept to
	// the gateway's own code and the libraries it calls, names the steps
	// those costs come from.
	var top strings.Builder
	for _, view := range [][]string{{"-nodecount=12"}, {"-cum", "-nodecount=30", "-show=" + profileFocus}} {
		args := append([]string{"tool", "pprof", "-top"}, view...)
		switch kind {
		case "allocs":
			args = append(args, "-sample_index=alloc_space")
		case "heap":
			args = append(args, "-sample_index=inuse_space")
		}
		out, err := exec.CommandContext(ctx, "go", append(args, file)...).Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "pprof:", err)
		}
		top.Write(out)
		top.WriteString("\n")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// With rounds, each round profiles again into the same file, and the
	// page lists the last.
	e.profiles = slices.DeleteFunc(e.profiles, func(p profile) bool { return p.scenario == sc.name && p.kind == kind })
	e.profiles = append(e.profiles, profile{scenario: sc.name, kind: kind, path: file, top: top.String()})
}
