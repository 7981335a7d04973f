package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/store"
)

// auditList reads GET /admin/audit and returns its events, newest first.
func (g *gateway) auditList(query string) []map[string]any {
	g.t.Helper()
	res := g.admin(http.MethodGet, "/admin/audit"+query, nil)
	if res.Status != http.StatusOK {
		g.t.Fatalf("GET /admin/audit: %d %s", res.Status, res.Body)
	}
	var page struct {
		Object     string           `json:"object"`
		Data       []map[string]any `json:"data"`
		NextCursor *string          `json:"next_cursor"`
	}
	if err := json.Unmarshal(res.Body, &page); err != nil || page.Object != "list" {
		g.t.Fatalf("audit page: %v %s", err, res.Body)
	}
	return page.Data
}

// TestAdminActionsAudited checks that each admin call that changes state
// leaves one chained audit event, and that reads leave none.
func TestAdminActionsAudited(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		g := startGateway(t, kind)
		// startGateway added two sessions.
		before := g.auditList("")
		if len(before) != 2 || before[0]["action"] != "session.create" {
			t.Fatalf("events after start: %v", before)
		}

		res := g.admin(http.MethodPost, "/admin/users", map[string]any{"name": "carol"})
		if res.Status != http.StatusCreated {
			t.Fatalf("create user: %d %s", res.Status, res.Body)
		}
		userID := res.json(t)["id"].(string)
		createReq := res.Header.Get("X-Request-ID")
		res = g.admin(http.MethodPost, "/admin/users/"+userID+"/keys", map[string]any{"name": "laptop"})
		if res.Status != http.StatusCreated {
			t.Fatalf("create key: %d %s", res.Status, res.Body)
		}
		keyText := res.json(t)["key"].(string)
		keyID := res.json(t)["id"].(string)
		g.admin(http.MethodGet, "/admin/users", nil)
		g.admin(http.MethodGet, "/admin/sessions", nil)
		if res := g.admin(http.MethodPatch, "/admin/users/"+userID, map[string]any{"active": false}); res.Status != http.StatusOK {
			t.Fatalf("update user: %d %s", res.Status, res.Body)
		}
		if res := g.admin(http.MethodPost, "/admin/keys/"+keyID+"/revoke", nil); res.Status >= 300 {
			t.Fatalf("revoke key: %d %s", res.Status, res.Body)
		}
		g.admin(http.MethodPost, "/admin/circuit/reset", nil)
		if res := g.admin(http.MethodDelete, "/admin/users/no-such-user", nil); res.Status != http.StatusNotFound {
			t.Fatalf("delete unknown user: %d", res.Status)
		}

		events := g.auditList("")
		var actions []string
		for _, e := range events {
			actions = append(actions, e["action"].(string))
		}
		want := []string{"user.delete", "circuit.reset", "key.revoke", "user.update", "key.create",
			"user.create", "session.create", "session.create"}
		mustEqualJSON(t, "actions, newest first", actions, want)

		created := events[5]
		if created["target"] != userID || created["actor"] != "usr_admin" ||
			created["client_ip"] != "127.0.0.1" || created["request_id"] != createReq {
			t.Errorf("user.create event: %v", created)
		}
		if d := created["details"].(map[string]any); d["status"] != float64(201) || d["route"] != "POST /admin/users" {
			t.Errorf("user.create details: %v", d)
		}
		if d := events[0]["details"].(map[string]any); d["status"] != float64(404) {
			t.Errorf("a refused call records its status: %v", d)
		}
		if d := events[4]["details"].(map[string]any); events[4]["target"] != userID ||
			fmt.Sprint(d["ids"]) != "["+keyID+"]" {
			t.Errorf("key.create event %v, want target %s and ids [%s]", events[4], userID, keyID)
		}
		raw, _ := json.Marshal(events)
		if strings.Contains(string(raw), keyText) || strings.Contains(string(raw), ssoA) {
			t.Errorf("an audit event holds a secret")
		}

		page := g.auditList("?limit=3")
		if len(page) != 3 {
			t.Fatalf("limit=3 gave %d events", len(page))
		}
		next := g.auditList(fmt.Sprintf("?limit=3&cursor=%.0f", page[2]["seq"].(float64)))
		if next[0]["id"] != events[3]["id"] {
			t.Errorf("second page starts at %v, want %v", next[0]["id"], events[3]["id"])
		}

		check, err := g.App.Store.VerifyAuditChain(context.Background())
		if err != nil || !check.Intact() || check.Checked != int64(len(events)) {
			t.Fatalf("chain: %+v %v", check, err)
		}
	})
}

func mustEqualJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("%s:\n got  %s\n want %s", what, g, w)
	}
}

// TestUserDataRights exports and erases a user's data, by an admin and by
// the user with their own key.
func TestUserDataRights(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		g := startGateway(t, kind, withConfig(func(c *config.Config) { c.EncryptContent = true }))
		newUser := func(name string) (id, key string) {
			res := g.admin(http.MethodPost, "/admin/users", map[string]any{"name": name})
			id = res.json(t)["id"].(string)
			res = g.admin(http.MethodPost, "/admin/users/"+id+"/keys", map[string]any{"name": "k"})
			return id, res.json(t)["key"].(string)
		}
		danID, danKey := newUser("dan")
		eveID, eveKey := newUser("eve")
		for _, k := range []string{danKey, danKey, eveKey} {
			res := g.do(http.MethodPost, "/v1/chat/completions", k, chatBody("Remember the word pelican.", false))
			if res.Status != http.StatusOK {
				t.Fatalf("chat: %d %s", res.Status, res.Body)
			}
		}
		g.waitGenerations(3)

		res := g.admin(http.MethodGet, "/admin/users/"+danID+"/export", nil)
		if res.Status != http.StatusOK {
			t.Fatalf("admin export: %d %s", res.Status, res.Body)
		}
		var exp struct {
			Object      string           `json:"object"`
			User        map[string]any   `json:"user"`
			APIKeys     []map[string]any `json:"api_keys"`
			Generations []map[string]any `json:"generations"`
		}
		if err := json.Unmarshal(res.Body, &exp); err != nil {
			t.Fatal(err)
		}
		if exp.Object != "user_export" || exp.User["name"] != "dan" || len(exp.APIKeys) != 1 || len(exp.Generations) != 2 {
			t.Fatalf("export: %s", res.Body)
		}
		if !strings.Contains(exp.Generations[0]["prompt"].(string), "pelican") {
			t.Errorf("exported prompt is not readable: %v", exp.Generations[0]["prompt"])
		}
		for _, bad := range []string{danKey, "secret_hash", eveID} {
			if strings.Contains(string(res.Body), bad) {
				t.Errorf("export holds %.12q", bad)
			}
		}

		res = g.do(http.MethodGet, "/v1/me/export", danKey, nil)
		if res.Status != http.StatusOK || !strings.Contains(string(res.Body), `"name":"dan"`) {
			t.Fatalf("own export: %d %s", res.Status, res.Body)
		}
		if res := g.do(http.MethodGet, "/v1/me/export", userKey, nil); res.Status != http.StatusForbidden {
			t.Errorf("static key export: %d, want 403", res.Status)
		}

		res = g.do(http.MethodDelete, "/v1/me/data", danKey, nil)
		if res.Status != http.StatusOK {
			t.Fatalf("own erase: %d %s", res.Status, res.Body)
		}
		var erased map[string]any
		json.Unmarshal(res.Body, &erased)
		if erased["generations"] != float64(2) || erased["api_keys"] != float64(1) || erased["user"] != true {
			t.Errorf("own erase: %s", res.Body)
		}
		if res := g.do(http.MethodGet, "/v1/me/export", danKey, nil); res.Status != http.StatusUnauthorized {
			t.Errorf("erased user's key still works: %d", res.Status)
		}
		if res := g.admin(http.MethodGet, "/admin/users/"+danID+"/export", nil); res.Status != http.StatusNotFound {
			t.Errorf("export after erase: %d %s", res.Status, res.Body)
		}

		res = g.admin(http.MethodDelete, "/admin/users/"+eveID+"/data", nil)
		if res.Status != http.StatusOK {
			t.Fatalf("admin erase: %d %s", res.Status, res.Body)
		}
		n, _ := g.App.Store.CountGenerations(context.Background())
		if n != 0 {
			t.Errorf("generations left after both erasures: %d", n)
		}
		var erases []map[string]any
		for _, e := range g.auditList("") {
			if e["action"] == "user.erase" {
				erases = append(erases, e)
			}
		}
		if len(erases) != 2 || erases[0]["target"] != eveID || erases[0]["actor"] != "usr_admin" ||
			erases[1]["target"] != danID || erases[1]["actor"] != danID {
			t.Errorf("erase events: %v", erases)
		}
	})
}

// TestErasureCoversSpool erases a user whose records wait in the spool
// while PostgreSQL is unreachable: none of them may reach the store later.
func TestErasureCoversSpool(t *testing.T) {
	g, proxy, _ := startProxiedGateway(t)
	proxy.cut()
	for range 3 {
		g.App.Audit.Record(store.Generation{UserID: "u-spooled", RequestID: "r-erased", Status: 200})
	}
	g.App.Audit.Record(store.Generation{UserID: "u-other", RequestID: "r-kept", Status: 200})
	waitFor(t, "records in the spool", func() bool { return g.App.Audit.Stats().SpoolRecords == 4 })

	n, err := g.App.Audit.Erase("u-spooled")
	if err != nil || n != 3 {
		t.Fatalf("erase spooled records: %d %v, want 3", n, err)
	}
	proxy.restore(t)
	waitRows(t, g, 1)
	list, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{})
	if err != nil || len(list) != 1 || list[0].UserID != "u-other" {
		t.Fatalf("stored after replay: %+v %v", list, err)
	}
}

// startProxiedGateway starts a gateway on PostgreSQL reached through a TCP
// proxy that the test can cut. It returns the direct URL of the schema too.
func startProxiedGateway(t *testing.T) (*gateway, *tcpProxy, string) {
	t.Helper()
	schemaURL := postgresSchema(t)
	target := "127.0.0.1:5432"
	proxy := startProxy(t, target)
	proxied := strings.Replace(schemaURL, target, proxy.addr, 1)
	if proxied == schemaURL {
		t.Skipf("TEST_DATABASE_URL does not point at %s", target)
	}
	g := startGateway(t, postgresStore, withConfig(func(c *config.Config) {
		c.DatabaseURL = proxied
		c.AuditFlushInterval = 50 * time.Millisecond
	}))
	return g, proxy, schemaURL
}

// TestAuditCommands runs "grokproxy audit verify", "audit list" and
// "retention run" beside a running gateway on the same SQLite file, then
// edits a row and expects verify to fail naming it.
func TestAuditCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin, "../../cmd/grokproxy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dbPath := filepath.Join(t.TempDir(), "gp.db")
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) { c.DatabaseURL = dbPath }))
	g.admin(http.MethodPost, "/admin/circuit/reset", nil)
	g.admin(http.MethodPost, "/admin/users", map[string]any{"name": "frank"})

	cli := func(args ...string) (string, string, int) {
		cmd := exec.Command(filepath.Join(bin, "grokproxy"), args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbPath, "LOG_LEVEL=warn")
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), code
	}

	out, errOut, code := cli("audit", "verify")
	if code != 0 || !strings.Contains(out, "intact: 4 events") {
		t.Fatalf("verify intact: exit %d, %q %q", code, out, errOut)
	}
	out, _, code = cli("audit", "list", "-limit", "2")
	if code != 0 || !strings.Contains(out, "user.create") || !strings.Contains(out, "circuit.reset") ||
		strings.Contains(out, "session.create") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	out, errOut, code = cli("retention", "run")
	if code != 0 || !strings.Contains(out, "deleted 0 generations and 0 sessions") {
		t.Fatalf("retention run: exit %d, %q %q", code, out, errOut)
	}
	for _, args := range [][]string{{"audit", "-h"}, {"audit", "verify", "-h"}, {"audit", "list", "-h"},
		{"retention", "-h"}, {"retention", "run", "-h"}} {
		if _, _, code := cli(args...); code != 0 {
			t.Errorf("%v: exit %d, want 0", args, code)
		}
	}

	// An intruder edits the second event.
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_events SET actor = 'nobody' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = cli("audit", "verify")
	if code == 0 || !strings.Contains(errOut, "BROKEN at seq 2") {
		t.Fatalf("verify after an edit: exit %d, %q %q", code, out, errOut)
	}
}

// tcpProxy forwards connections to target until cut, and again after
// restore, on the same address.
type tcpProxy struct {
	target string
	addr   string

	mu    sync.Mutex // guards the fields below
	ln    net.Listener
	conns map[net.Conn]bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *tcpProxy) pipe(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

// cut closes the listener and every open connection, as a database
// outage does.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *tcpProxy) restore(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("restore proxy on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// TestAuditSurvivesPostgresOutage sends chat requests while the connection
// to PostgreSQL is cut and restored, then checks that every admitted
// request has exactly one generation row.
func TestAuditSurvivesPostgresOutage(t *testing.T) {
	g, proxy, schemaURL := startProxiedGateway(t)

	var (
		mu       sync.Mutex
		admitted []string
		rejected atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				res := g.do(http.MethodPost, "/v1/chat/completions", userKey,
					chatBody(fmt.Sprintf("load %d-%d", w, i), i%2 == 0))
				id := res.Header.Get("X-Request-ID")
				if res.Status == http.StatusServiceUnavailable && strings.Contains(string(res.Body), "audit_unavailable") {
					rejected.Add(1)
					continue
				}
				mu.Lock()
				admitted = append(admitted, id)
				mu.Unlock()
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(admitted)
	}
	waitFor(t, "requests before the outage", func() bool { return count() >= 20 })
	proxy.cut()
	atOutage := count()
	waitFor(t, "requests during the outage", func() bool {
		return count() >= atOutage+40 && g.App.Audit.Stats().SpoolRecords > 0
	})
	proxy.restore(t)
	afterRestore := count()
	waitFor(t, "requests after the outage", func() bool { return count() >= afterRestore+20 })
	stop.Store(true)
	wg.Wait()

	ids := admitted
	waitRows(t, g, int64(len(ids)))
	rows := requestIDCounts(t, schemaURL)
	for _, id := range ids {
		if rows[id] != 1 {
			t.Errorf("request %s has %d rows, want 1", id, rows[id])
		}
	}
	if len(rows) != len(ids) {
		t.Errorf("%d distinct request ids stored for %d admitted requests", len(rows), len(ids))
	}
	if st := g.App.Audit.Stats(); st.Dropped != 0 || st.Spooled == 0 {
		t.Errorf("writer stats %+v: want records spooled and none dropped", st)
	}
	t.Logf("%d requests admitted (%d during the outage), %d rejected", len(ids), afterRestore-atOutage, rejected.Load())
}

func requestIDCounts(t *testing.T, url string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT request_id, COUNT(*) FROM generations GROUP BY request_id`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitRows polls until the store holds want generations, through errors
// of connections that the outage broke.
func waitRows(t *testing.T, g *gateway, want int64) {
	t.Helper()
	var n int64
	waitFor(t, fmt.Sprintf("%d generation rows", want), func() bool {
		got, err := g.App.Store.CountGenerations(context.Background())
		if err == nil {
			n = got
		}
		return err == nil && got >= want
	})
	if n != want {
		t.Fatalf("generation rows: got %d, want %d", n, want)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoSecretsOrPIIInLogs runs traffic that carries planted secrets and
// personal data in prompts, headers, bodies and keys, at debug level, and
// fails if any of them reaches the log output.
func TestNoSecretsOrPIIInLogs(t *testing.T) {
	const (
		email    = "jane.planted@example.org"
		phone    = "+1 415-555-0134"
		ssn      = "078-05-1120"
		cookie   = "sso=planted-cookie-9f8e7d6c5b4a"
		badKey   = "gp_0123456789ab_plantedSecretPlantedSecretPlantedSecret1234"
		xaiKey   = "xai-PlantedKeyPlantedKey1234567890"
		password = "hunter2-planted-pw"
	)
	planted := []string{email, phone, ssn, "planted-cookie-9f8e7d6c5b4a", badKey, xaiKey, password}
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) { c.StoreContent = "redacted" }))

	prompt := fmt.Sprintf("Mail %s, call %s, SSN %s, cookie %s, key %s, password %s.",
		email, phone, ssn, cookie, xaiKey, password)
	hdr := []string{"Cookie", cookie, "X-Debug-Email", email, "X-Api-Password", password}
	for _, stream := range []bool{false, true} {
		res := g.do(http.MethodPost, "/v1/chat/completions", userKey, chatBody(prompt, stream), hdr...)
		if res.Status != http.StatusOK {
			t.Fatalf("chat: %d %s", res.Status, res.Body)
		}
	}
	g.do(http.MethodPost, "/v1/chat/completions", badKey, chatBody(prompt, false), hdr...)
	g.do(http.MethodPost, "/v1/chat/completions", userKey, `{"model": "`+email+`", "messages": []}`, hdr...)
	g.do(http.MethodPost, "/v1/chat/completions", userKey, `{not json `+ssn, hdr...)
	g.do(http.MethodGet, "/v1/models/"+email, userKey, nil, hdr...)
	g.do(http.MethodPost, "/admin/sessions", g.AdminKey, map[string]any{"cookie_text": cookie, "provider": "grok"}, hdr...)
	g.do(http.MethodPost, "/admin/sessions", g.AdminKey, map[string]any{"cookie_text": password, "provider": "grok"}, hdr...)
	g.do(http.MethodPost, "/admin/users", g.AdminKey, map[string]any{"name": "x", "metadata": map[string]string{"email": email}}, hdr...)
	g.do(http.MethodGet, "/admin/nothing?token="+badKey, g.AdminKey, nil, hdr...)
	waitFor(t, "generation rows", func() bool {
		n, err := g.App.Store.CountGenerations(context.Background())
		return err == nil && n >= 3
	})

	// Close now, so that shutdown logging is part of the check.
	g.App.Audit.Close(context.Background())
	logs := g.logs.String()
	if !strings.Contains(logs, "request") {
		t.Fatalf("no request was logged; the check would prove nothing:\n%s", logs)
	}
	for _, s := range planted {
		if strings.Contains(logs, s) {
			t.Errorf("planted value %.10q… appears in the log output", s)
		}
	}
	list, _ := g.App.Store.Generations(context.Background(), store.GenerationFilter{})
	for _, gen := range list {
		for _, s := range []string{email, phone, ssn} {
			if strings.Contains(gen.Prompt, s) {
				t.Errorf("STORE_CONTENT=redacted kept %.10q… in a prompt", s)
			}
		}
	}
}
