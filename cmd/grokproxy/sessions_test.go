package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

// sessionsEnv points the commands at a new SQLite store with keyring key
// and returns the database path.
func sessionsEnv(t *testing.T, key string) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "grokproxy.db")
	t.Setenv("DATABASE_URL", db)
	t.Setenv("GROKPROXY_ENCRYPTION_KEY", key)
	return db
}

// runSessions runs "grokproxy sessions args…" and returns its exit code
// and output.
func runSessions(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(append([]string{"sessions"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func storedSessions(t *testing.T, db string) []store.Session {
	t.Helper()
	st, err := sqlite.Open(context.Background(), db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ss, err := st.Sessions(context.Background(), store.SessionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func TestSessionsImportFormats(t *testing.T) {
	cases := []struct {
		name, file, text string
		added, invalid   int
	}{
		{"text", "cookies.txt", "# exported\nsso=text-one\n\nsso=text-two; sso-rw=text-two\ncf_clearance=abc; theme=dark\n", 2, 1},
		{"json strings", "cookies.json", `["sso=json-one", "sso=json-two"]`, 2, 0},
		{"json objects", "cookies.json", `[{"cookie_text":"sso=obj-one","label":"first"},{"label":"no cookie"}]`, 1, 1},
		{"jsonl", "cookies.jsonl", "{\"cookie_text\":\"sso=jl-one\"}\n\"sso=jl-two\"\n{\"cookie_text\":\"sso=jl-three\"}\n", 3, 0},
		{"yaml", "cookies.yaml", "version: 2\ncookies:\n  - sso=yaml-one\n  - \"sso=yaml-two\"\nnotes: ignored\n", 2, 0},
		{"sniffed yaml", "cookies", "cookies:\n  - sso=sniff-one\n", 1, 0},
		{"sniffed json", "cookies", `["sso=sniff-json"]`, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := sessionsEnv(t, keyring.Generate())
			path := writeFile(t, tc.file, tc.text)
			code, out, errOut := runSessions(t, "import", path)
			if code != 0 {
				t.Fatalf("exit %d: %s %s", code, out, errOut)
			}
			want := fmt.Sprintf("added %d, duplicate 0, invalid %d", tc.added, tc.invalid)
			if strings.TrimSpace(out) != want {
				t.Errorf("output %q; want %q", out, want)
			}
			if n := len(storedSessions(t, db)); n != tc.added {
				t.Errorf("stored sessions = %d; want %d", n, tc.added)
			}
			if strings.Contains(errOut, "theme=dark") {
				t.Errorf("an error message quotes the cookie: %s", errOut)
			}
		})
	}
}

func TestSessionsImportDuplicates(t *testing.T) {
	db := sessionsEnv(t, keyring.Generate())
	path := writeFile(t, "cookies.txt", "sso=dup-one\nsso=dup-two\nsso=dup-one; x-userid=u1\n")
	_, out, _ := runSessions(t, "import", path)
	if strings.TrimSpace(out) != "added 2, duplicate 1, invalid 0" {
		t.Errorf("first import: %q", out)
	}
	code, out, _ := runSessions(t, "import", path)
	if code != 0 || strings.TrimSpace(out) != "added 0, duplicate 3, invalid 0" {
		t.Errorf("second import: exit %d %q", code, out)
	}
	ss := storedSessions(t, db)
	if len(ss) != 2 || ss[0].Status != store.StatusHealthy {
		t.Errorf("stored %d sessions; want 2 healthy", len(ss))
	}
	for _, s := range ss {
		if bytes.Contains(s.Credential, []byte("dup-")) {
			t.Errorf("session %s: cookie stored in clear text", s.ID)
		}
	}
}

func TestSessionsImportMissingFile(t *testing.T) {
	sessionsEnv(t, keyring.Generate())
	if code, _, errOut := runSessions(t, "import", filepath.Join(t.TempDir(), "none.txt")); code != 1 || errOut == "" {
		t.Errorf("exit %d %q; want 1 with a message", code, errOut)
	}
	if code, _, _ := runSessions(t, "import"); code != 2 {
		t.Errorf("import without FILE: exit %d; want 2", code)
	}
	bad := writeFile(t, "bad.json", `[{"cookie_text": "sso=x"`)
	if code, _, errOut := runSessions(t, "import", bad); code != 1 || strings.Contains(errOut, "sso=x") {
		t.Errorf("broken JSON: exit %d %q; want 1 without the cookie", code, errOut)
	}
}

func TestSessionsExportRoundTrip(t *testing.T) {
	for _, format := range []string{"text", "json", "jsonl", "yaml"} {
		t.Run(format, func(t *testing.T) {
			sessionsEnv(t, keyring.Generate())
			src := writeFile(t, "in.txt", "sso=round-one\nsso=round-two\n")
			if code, out, errOut := runSessions(t, "import", src); code != 0 {
				t.Fatalf("import: %d %s %s", code, out, errOut)
			}
			dump := filepath.Join(t.TempDir(), "out."+format)
			if code, _, errOut := runSessions(t, "export", "-include-cookies", "-o", dump); code != 0 {
				t.Fatalf("export: %d %s", code, errOut)
			}
			info, err := os.Stat(dump)
			if err != nil || info.Mode().Perm() != 0o600 {
				t.Fatalf("export file: %v %v; want mode 0600", info, err)
			}

			db2 := sessionsEnv(t, keyring.Generate())
			code, out, errOut := runSessions(t, "import", dump)
			if code != 0 || strings.TrimSpace(out) != "added 2, duplicate 0, invalid 0" {
				t.Fatalf("import of the export: %d %q %s", code, out, errOut)
			}
			if n := len(storedSessions(t, db2)); n != 2 {
				t.Errorf("sessions after round trip = %d; want 2", n)
			}
		})
	}
}

func TestSessionsExportHidesCookies(t *testing.T) {
	sessionsEnv(t, keyring.Generate())
	src := writeFile(t, "in.txt", "sso=hidden-cookie-value\n")
	runSessions(t, "import", "-label", "main account", src)
	for _, format := range []string{"json", "jsonl", "yaml"} {
		code, out, errOut := runSessions(t, "export", "-format", format)
		if code != 0 {
			t.Fatalf("%s: exit %d %s", format, code, errOut)
		}
		if strings.Contains(out, "hidden-cookie-value") {
			t.Errorf("%s export without -include-cookies contains the cookie", format)
		}
		if !strings.Contains(out, "main account") || !strings.Contains(out, "healthy") {
			t.Errorf("%s export lacks the label or status: %s", format, out)
		}
	}
	if code, _, errOut := runSessions(t, "export", "-format", "text"); code != 1 || !strings.Contains(errOut, "-include-cookies") {
		t.Errorf("text export without cookies: exit %d %q; want 1 naming -include-cookies", code, errOut)
	}
	code, out, _ := runSessions(t, "list")
	if code != 0 || !strings.Contains(out, "main account") || strings.Contains(out, "hidden-cookie-value") {
		t.Errorf("list: exit %d %q", code, out)
	}
}

func TestSessionsReencrypt(t *testing.T) {
	oldKey := "old:" + strings.TrimPrefix(keyring.Generate(), "k1:")
	newKey := "new:" + strings.TrimPrefix(keyring.Generate(), "k1:")
	db := sessionsEnv(t, oldKey)
	src := writeFile(t, "in.json", `[{"cookie_text":"sso=rotate-one","proxy_url":"http://u:p@127.0.0.1:3128"},"sso=rotate-two"]`)
	if code, out, errOut := runSessions(t, "import", src); code != 0 {
		t.Fatalf("import: %d %s %s", code, out, errOut)
	}

	t.Setenv("GROKPROXY_ENCRYPTION_KEY", oldKey+","+newKey)
	code, out, errOut := runSessions(t, "reencrypt")
	if code != 0 || strings.TrimSpace(out) != "re-encrypted 2, already on key new 0, failed 0" {
		t.Fatalf("reencrypt: exit %d %q %s", code, out, errOut)
	}
	kr, _ := keyring.Parse(oldKey + "," + newKey)
	for _, s := range storedSessions(t, db) {
		for _, ct := range [][]byte{s.Credential, s.ProxyURL} {
			if id, err := kr.KeyID(ct); len(ct) > 0 && (err != nil || id != "new") {
				t.Errorf("session %s: sealed by %q (%v); want new", s.ID, id, err)
			}
		}
	}
	code, out, _ = runSessions(t, "reencrypt")
	if code != 0 || strings.TrimSpace(out) != "re-encrypted 0, already on key new 2, failed 0" {
		t.Errorf("second reencrypt: exit %d %q", code, out)
	}

	// The old key is no longer needed.
	t.Setenv("GROKPROXY_ENCRYPTION_KEY", newKey)
	code, out, errOut = runSessions(t, "export", "-include-cookies", "-format", "text")
	if code != 0 || !strings.Contains(out, "sso=rotate-one") || !strings.Contains(out, "sso=rotate-two") {
		t.Errorf("export with the new key only: exit %d %q %s", code, out, errOut)
	}
}

func TestSessionsHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"list", "-h"}, {"import", "-h"}, {"export", "--help"}, {"reencrypt", "-h"}} {
		code, out, _ := runSessions(t, args...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("sessions %v: exit %d %q; want 0 with usage", args, code, out)
		}
	}
	_, out, _ := runSessions(t, "export", "-h")
	if !strings.Contains(out, "-include-cookies") || !strings.Contains(out, "0600") {
		t.Errorf("export help lacks its flags: %s", out)
	}
	if code, _, _ := runSessions(t, "bogus"); code != 2 {
		t.Errorf("unknown subcommand: exit %d; want 2", code)
	}
}

// TestSessionsImportBesideServe imports into the store of a running
// gateway, which takes the new sessions into rotation without a restart.
func TestSessionsImportBesideServe(t *testing.T) {
	db := sessionsEnv(t, keyring.Generate())
	cfg, err := config.Load("", os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SessionHealthCheckInterval = 50 * time.Millisecond
	cfg.GrokBaseURL = "http://127.0.0.1:1" // no upstream is called
	cfg.ShutdownTimeout = 5 * time.Second
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.Start(ctx)
	defer func() {
		cancel()
		a.Close()
	}()

	src := writeFile(t, "in.txt", "sso=live-one\nsso=live-two\n")
	if code, out, errOut := runSessions(t, "import", src); code != 0 || !strings.Contains(out, "added 2") {
		t.Fatalf("import beside serve: %d %q %s", code, out, errOut)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.Pool.Usable(store.ProviderGrok) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("usable sessions = %d; want the 2 imported ones", a.Pool.Usable(store.ProviderGrok))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(storedSessions(t, db)); n != 2 {
		t.Errorf("stored sessions = %d; want 2", n)
	}
}
