package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/observe"
)

// runCLI runs the command line with args and returns its exit code and
// outputs.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// cliStore points the commands at a fresh SQLite file.
func cliStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cli.db")
	t.Setenv("DATABASE_URL", path)
	t.Setenv("BCRYPT_COST", "10")
	t.Setenv("REDIS_URL", "")
	return path
}

func TestUsersAndKeysCommands(t *testing.T) {
	db := cliStore(t)

	code, out, errOut := runCLI(t, "users", "create", "-name", "alice", "-rate-limit", "7",
		"-max-concurrent", "2", "-models", "grok-3, grok-4", "-expires", "720h")
	if code != 0 {
		t.Fatalf("users create: exit %d: %s", code, errOut)
	}
	var user struct {
		ID                  string   `json:"id"`
		Name                string   `json:"name"`
		Role                string   `json:"role"`
		Active              bool     `json:"active"`
		RateLimitPerMinute  *int     `json:"rate_limit_per_minute"`
		MaxConcurrentPerKey int      `json:"max_concurrent_per_key"`
		Models              []string `json:"models"`
		ExpiresAt           *string  `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(out), &user); err != nil {
		t.Fatalf("users create printed %q: %v", out, err)
	}
	if user.Name != "alice" || user.Role != "user" || !user.Active || user.RateLimitPerMinute == nil ||
		*user.RateLimitPerMinute != 7 || user.MaxConcurrentPerKey != 2 ||
		strings.Join(user.Models, ",") != "grok-3,grok-4" || user.ExpiresAt == nil {
		t.Errorf("created user %+v", user)
	}

	code, out, errOut = runCLI(t, "users", "update", user.ID, "-rate-limit", "default", "-active=false")
	if code != 0 {
		t.Fatalf("users update: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, `"rate_limit_per_minute":null`) || !strings.Contains(out, `"active":false`) {
		t.Errorf("users update printed %s", out)
	}
	code, out, _ = runCLI(t, "users", "list")
	if code != 0 || !strings.Contains(out, user.ID) || !strings.Contains(out, "60 (default)") {
		t.Errorf("users list: exit %d:\n%s", code, out)
	}

	// The key text goes to stdout alone; the details go to stderr.
	code, out, errOut = runCLI(t, "keys", "create", "-user", user.ID, "-name", "laptop")
	if code != 0 {
		t.Fatalf("keys create: exit %d: %s", code, errOut)
	}
	text := strings.TrimSpace(out)
	if !auth.KeyPattern.MatchString(text) {
		t.Fatalf("keys create printed %q; want only the key text", out)
	}
	if strings.Contains(errOut, text) {
		t.Error("the key text appears on stderr too")
	}
	keyID := keyIDFrom(t, errOut)

	code, out, _ = runCLI(t, "keys", "list", "-user", user.ID)
	if code != 0 || !strings.Contains(out, keyID) || strings.Contains(out, text) {
		t.Errorf("keys list: exit %d:\n%s", code, out)
	}

	code, out, errOut = runCLI(t, "keys", "rotate", keyID, "-grace", "0s", "-request-id", "r1")
	if code != 0 || !auth.KeyPattern.MatchString(strings.TrimSpace(out)) {
		t.Fatalf("keys rotate: exit %d: %s %s", code, out, errOut)
	}
	rotated := keyIDFrom(t, errOut)
	code, out, _ = runCLI(t, "keys", "rotate", keyID, "-grace", "0s", "-request-id", "r1")
	if code != 0 || !strings.Contains(out, rotated) || auth.KeyPattern.MatchString(strings.TrimSpace(out)) {
		t.Errorf("repeated rotation: exit %d, printed %s; want key %s without text", code, out, rotated)
	}

	code, _, errOut = runCLI(t, "keys", "revoke", rotated)
	if code != 0 {
		t.Fatalf("keys revoke: exit %d: %s", code, errOut)
	}
	st, err := app.OpenStore(context.Background(), config.Config{DatabaseURL: db}, observe.NewLogger(io.Discard, "error", "json"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := st.APIKey(context.Background(), rotated)
	st.Close()
	if err != nil || k.RevokedAt.IsZero() || time.Since(k.RevokedAt) > time.Minute {
		t.Errorf("rotated key after revoke: %+v, %v", k, err)
	}

	if code, _, errOut := runCLI(t, "users", "delete", user.ID); code != 0 {
		t.Fatalf("users delete: exit %d: %s", code, errOut)
	}
	if code, out, _ := runCLI(t, "users", "list", "-json"); code != 0 || strings.Contains(out, user.ID) {
		t.Errorf("user still listed after delete: %s", out)
	}
}

// keyIDFrom reads the key id from the details a key command printed.
func keyIDFrom(t *testing.T, stderr string) string {
	t.Helper()
	line, _, _ := strings.Cut(stderr, "\n")
	var k struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(line), &k); err != nil || k.ID == "" {
		t.Fatalf("no key details in %q: %v", stderr, err)
	}
	return k.ID
}

func TestAccountCommandsHelp(t *testing.T) {
	for _, args := range [][]string{
		{"users", "-h"}, {"users", "list", "-h"}, {"users", "create", "-h"}, {"users", "update", "-h"},
		{"users", "delete", "--help"}, {"keys", "--help"}, {"keys", "create", "-h"}, {"keys", "list", "-h"},
		{"keys", "revoke", "-h"}, {"keys", "rotate", "-h"},
	} {
		code, out, _ := runCLI(t, args...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: exit %d, output %q; want usage on stdout and exit 0", args, code, out)
		}
	}
	code, out, _ := runCLI(t, "keys", "rotate", "-h")
	if code != 0 || !strings.Contains(out, "-grace") || !strings.Contains(out, "duration") {
		t.Errorf("keys rotate -h does not describe -grace and its unit: %s", out)
	}
}

func TestAccountCommandsReject(t *testing.T) {
	cliStore(t)
	cases := [][]string{
		{"users", "create"},
		{"users", "create", "-name", "x", "-role", "root"},
		{"users", "create", "-name", "x", "-rate-limit", "0"},
		{"users", "update"},
		{"users", "update", "usr_missing", "-name", "y"},
		{"keys", "create"},
		{"keys", "create", "-user", "usr_missing"},
		{"keys", "rotate", "k", "-grace", "-1s"},
		{"users", "frobnicate"},
	}
	for _, args := range cases {
		if code, _, _ := runCLI(t, args...); code == 0 {
			t.Errorf("%v: exit 0; want an error", args)
		}
	}
}
