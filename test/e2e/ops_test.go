package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

// metricSamples returns the sample lines of /metrics by family name.
func (g *gateway) metricSamples() map[string][]string {
	g.t.Helper()
	res := g.do(http.MethodGet, "/metrics", "", nil)
	if res.Status != http.StatusOK {
		g.t.Fatalf("/metrics without a key: %d %s", res.Status, res.Body)
	}
	families := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(string(res.Body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		families[familyOf(name)] = append(families[familyOf(name)], line)
	}
	return families
}

// familyOf strips the series suffixes of histograms and summaries.
func familyOf(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && !strings.HasSuffix(base, "_total") {
			return base
		}
	}
	return name
}

// TestMetricsFromTheStart checks that every family an operator needs has a
// sample on a gateway that has served nothing yet, and that no label
// holds a user, key, session id or prompt.
func TestMetricsFromTheStart(t *testing.T) {
	g := startGateway(t, sqliteStore)
	fams := g.metricSamples()
	want := []string{
		"grokproxy_requests_total", "grokproxy_request_duration_seconds", "grokproxy_requests_in_flight",
		"grokproxy_generation_latency_seconds", "grokproxy_time_to_first_token_seconds",
		"grokproxy_upstream_requests_total", "grokproxy_active_sessions", "grokproxy_session_rotations_total",
		"grokproxy_circuit_state", "grokproxy_ratelimit_rejections_total",
		"grokproxy_db_query_duration_seconds", "grokproxy_db_query_errors_total",
		"grokproxy_db_pool_connections", "grokproxy_db_operations_in_flight",
		"grokproxy_audit_queue_depth", "grokproxy_audit_spool_bytes", "grokproxy_audit_spool_records",
		"grokproxy_audit_records_total",
		"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes",
	}
	for _, name := range want {
		if len(fams[name]) == 0 {
			t.Errorf("%s has no sample at start", name)
		}
	}
	for _, line := range fams["grokproxy_active_sessions"] {
		if strings.Contains(line, `provider="grok",status="healthy"`) && !strings.HasSuffix(line, " 2") {
			t.Errorf("healthy grok sessions: %s, want 2", line)
		}
	}

	res := g.do(http.MethodPost, "/v1/chat/completions", userKey, chatBody("Count me in the metrics.", false))
	if res.Status != http.StatusOK {
		t.Fatalf("chat: %d %s", res.Status, res.Body)
	}
	g.waitGenerations(1)
	body := string(g.do(http.MethodGet, "/metrics", "", nil).Body)
	for _, want := range []string{
		`grokproxy_requests_total{route="chat_completions",status="200"} 1`,
		`grokproxy_upstream_requests_total{outcome="ok",provider="grok"} 1`,
		`grokproxy_generation_latency_seconds_count{model="grok-3",provider="grok"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !regexp.MustCompile(`grokproxy_db_query_duration_seconds_count\{op="insert_generations"\} [1-9]`).MatchString(body) {
		t.Errorf("the audit insert was not timed")
	}
	for _, leak := range []string{userKey, ssoA, "usr_", "sess_", "Count me in"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics holds %q", leak)
		}
	}
}

// TestRunbookMetricsExist checks that every metric the runbook names is
// exported by a started gateway.
func TestRunbookMetricsExist(t *testing.T) {
	text, err := os.ReadFile("../../docs/RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bgrokproxy_[a-z0-9_]*[a-z0-9]`).FindAllString(string(text), -1) {
		names[familyOf(m)] = true
	}
	if len(names) < 10 {
		t.Fatalf("the runbook names only %d metrics", len(names))
	}
	fams := startGateway(t, sqliteStore).metricSamples()
	var missing []string
	for name := range names {
		if len(fams[name]) == 0 {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the runbook names metrics the gateway does not export: %s", strings.Join(missing, ", "))
	}
}

// TestHealthAndReadiness follows /health and /readyz from serving to
// unable to serve: both sessions quarantined.
func TestHealthAndReadiness(t *testing.T) {
	g := startGateway(t, sqliteStore)
	for _, path := range []string{"/livez", "/readyz", "/health"} {
		if res := g.do(http.MethodGet, path, "", nil); res.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, res.Status, res.Body)
		}
	}
	h := g.do(http.MethodGet, "/health", "", nil).json(t)
	comps, _ := h["components"].(map[string]any)
	for _, name := range []string{"store", "sessions", "circuit"} {
		c, _ := comps[name].(map[string]any)
		if c == nil || c["status"] != "ok" {
			t.Errorf("component %s: %v", name, comps[name])
		}
	}
	sessions, _ := comps["sessions"].(map[string]any)
	counts, _ := sessions["counts"].(map[string]any)
	if counts["healthy"] != float64(2) || counts["quarantined"] != float64(0) {
		t.Errorf("session counts: %v", counts)
	}

	list := g.admin(http.MethodGet, "/admin/sessions", nil).json(t)
	data, _ := list["data"].([]any)
	for _, s := range data {
		id := s.(map[string]any)["id"].(string)
		if res := g.admin(http.MethodPatch, "/admin/sessions/"+id+"/quarantine", map[string]any{}); res.Status != http.StatusOK {
			t.Fatalf("quarantine: %d %s", res.Status, res.Body)
		}
	}
	res := g.do(http.MethodGet, "/health", "", nil)
	if res.Status != http.StatusServiceUnavailable || res.json(t)["status"] != "down" {
		t.Errorf("/health with no usable session: %d %s", res.Status, res.Body)
	}
	res = g.do(http.MethodGet, "/readyz", "", nil)
	if res.Status != http.StatusServiceUnavailable || !strings.Contains(string(res.Body), "no healthy session") {
		t.Errorf("/readyz with no healthy session: %d %s", res.Status, res.Body)
	}
	if res := g.do(http.MethodGet, "/livez", "", nil); res.Status != http.StatusOK {
		t.Errorf("/livez: %d", res.Status)
	}
}

func TestReadinessWithoutSessionRequirement(t *testing.T) {
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) { c.ReadyRequiresSession = false }))
	list := g.admin(http.MethodGet, "/admin/sessions", nil).json(t)
	for _, s := range list["data"].([]any) {
		g.admin(http.MethodDelete, "/admin/sessions/"+s.(map[string]any)["id"].(string), nil)
	}
	if res := g.do(http.MethodGet, "/readyz", "", nil); res.Status != http.StatusOK {
		t.Errorf("/readyz without sessions and READY_REQUIRES_SESSION=false: %d %s", res.Status, res.Body)
	}
}

// TestOpenRoutesKeepTheAllowlist checks that the routes without a key
// still refuse addresses outside IP_ALLOWLIST.
func TestOpenRoutesKeepTheAllowlist(t *testing.T) {
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) {
		c.IPAllowlist = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	}))
	for _, path := range []string{"/metrics", "/health", "/livez", "/readyz"} {
		if res := g.do(http.MethodGet, path, "", nil); res.Status != http.StatusForbidden {
			t.Errorf("%s from outside the allowlist: %d", path, res.Status)
		}
	}
}

// TestRequestIDEverywhere checks that a client's X-Request-ID comes back
// in the response, the error body, the log lines and the audit row.
func TestRequestIDEverywhere(t *testing.T) {
	g := startGateway(t, sqliteStore)
	res := g.do(http.MethodPost, "/v1/chat/completions", userKey, chatBody("Trace this request.", true),
		"X-Request-ID", "ops-trace-1")
	if res.Status != http.StatusOK || res.Header.Get("X-Request-ID") != "ops-trace-1" {
		t.Fatalf("chat: %d, X-Request-ID %q", res.Status, res.Header.Get("X-Request-ID"))
	}
	g.waitGenerations(1)
	gens, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{})
	if err != nil || len(gens) != 1 || gens[0].RequestID != "ops-trace-1" {
		t.Fatalf("audit row request id: %+v %v", gens, err)
	}

	bad := g.do(http.MethodPost, "/v1/chat/completions", userKey, map[string]any{"model": "no-such-model",
		"messages": []map[string]any{{"role": "user", "content": "x"}}}, "X-Request-ID", "ops-trace-2")
	if bad.Status != http.StatusNotFound {
		t.Fatalf("unknown model: %d %s", bad.Status, bad.Body)
	}
	errBody, _ := bad.json(t)["error"].(map[string]any)
	if errBody["request_id"] != "ops-trace-2" {
		t.Errorf("error body request_id = %v", errBody["request_id"])
	}
	unauth := g.do(http.MethodGet, "/v1/models", "wrong-key", nil)
	if id := unauth.Header.Get("X-Request-ID"); id == "" || !strings.Contains(string(unauth.Body), id) {
		t.Errorf("a generated request id is not in the 401 body: %q %s", id, unauth.Body)
	}

	// Every log line written while serving a request names it.
	var lines int
	for _, line := range strings.Split(g.logs.String(), "\n") {
		if strings.Contains(line, "Trace this") {
			t.Errorf("a prompt reached the log: %s", line)
		}
		if strings.Contains(line, `"route":"chat_completions"`) {
			lines++
			if !strings.Contains(line, `"request_id":"ops-trace-`) {
				t.Errorf("a request's log line lacks its request id: %s", line)
			}
		}
	}
	if lines < 2 {
		t.Errorf("found %d chat log lines, want at least 2", lines)
	}
}

// TestSIGTERMDrainsStream sends SIGTERM to a built gateway while it
// streams a slow answer: the stream must end whole with [DONE], the
// process must exit 0, and the request's audit row must be in the store.
func TestSIGTERMDrainsStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	bin := t.TempDir()
	gw, emu := buildCommands(t, bin)
	work := t.TempDir()

	emuPort := freePort(t)
	em := startProcess(t, work, nil, emu, "-listen", fmt.Sprintf("127.0.0.1:%d", emuPort),
		"-accounts", ssoA, "-token-delay", "100ms", "-chunks", "20")
	emuURL := fmt.Sprintf("http://127.0.0.1:%d", emuPort)
	waitDial(t, fmt.Sprintf("127.0.0.1:%d", emuPort), em)

	port := freePort(t)
	admin := "admin-key-ops-7c1f0e"
	env := []string{fmt.Sprintf("PORT=%d", port), "HOST=127.0.0.1", "GROK_BASE_URL=" + emuURL,
		"API_PASSWORD=" + userKey, "ADMIN_API_KEYS=" + admin, "BCRYPT_COST=10", "SHUTDOWN_TIMEOUT=20s"}
	gp := startProcess(t, work, env, gw, "serve")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, base+"/livez", gp)
	g := &gateway{t: t, URL: base, AdminKey: admin}
	if res := g.admin(http.MethodPost, "/admin/sessions", map[string]any{"cookie_text": "sso=" + ssoA, "provider": "grok"}); res.Status != http.StatusCreated {
		t.Fatalf("add session: %d %s", res.Status, res.Body)
	}
	waitHTTP(t, base+"/readyz", gp)

	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions",
		strings.NewReader(`{"model":"grok-3","stream":true,"messages":[{"role":"user","content":"Drain me slowly."}]}`))
	req.Header.Set("Authorization", "Bearer "+userKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", "ops-drain-1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("stream: %d %s", res.StatusCode, b)
	}
	rd := bufio.NewReader(res.Body)
	first, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "data: ") {
		t.Fatalf("first stream line %q: %v", first, err)
	}

	sent := time.Now()
	if err := gp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rd)
	if err != nil {
		t.Fatalf("the stream broke after SIGTERM: %v", err)
	}
	if !strings.Contains(string(rest), "data: [DONE]") {
		t.Errorf("the stream did not end with [DONE]:\n%s", rest)
	}
	if time.Since(sent) < 500*time.Millisecond {
		t.Errorf("the stream ended %v after SIGTERM; it was not slow enough to test draining", time.Since(sent))
	}

	select {
	case err := <-gp.done:
		gp.done <- err
		if err != nil {
			t.Fatalf("serve exited with %v:\n%s", err, gp.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM:\n%s", gp.stderr.String())
	}
	if c, err := http.Get(base + "/livez"); err == nil {
		c.Body.Close()
		t.Errorf("the gateway still answers after exiting")
	}

	st, err := sqlite.Open(context.Background(), filepath.Join(work, "grokproxy.db"), observe.NewLogger(io.Discard, "error", "json"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gens, err := st.Generations(context.Background(), store.GenerationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(gens) != 1 || gens[0].RequestID != "ops-drain-1" || gens[0].Status != http.StatusOK {
		t.Errorf("audit rows after the drain: %+v", gens)
	}
	em.stop(t)
}

// waitDial waits until addr accepts TCP connections.
func waitDial(t *testing.T, addr string, p *process) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never accepted a connection; output:\n%s", addr, p.stderr.String())
}
