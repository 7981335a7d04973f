package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/config"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := config.Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8000 {
		t.Errorf("Port = %d; want 8000", c.Port)
	}
	if c.DatabaseURL != "./grokproxy.db" || c.IsPostgres() {
		t.Errorf("DatabaseURL = %q (postgres %v); want ./grokproxy.db on SQLite", c.DatabaseURL, c.IsPostgres())
	}
	if c.UserRateLimitPerMinute != 60 || c.MaxAttempts != 3 {
		t.Errorf("limits = %d/min, %d attempts; want 60, 3", c.UserRateLimitPerMinute, c.MaxAttempts)
	}
	if c.SessionMaxAge != 24*time.Hour || c.SessionRotationWindow != 24*time.Hour {
		t.Errorf("session ages = %v, %v; want 24h", c.SessionMaxAge, c.SessionRotationWindow)
	}
	if c.SessionFailureThreshold != 0.2 || c.SessionFailureWindow != 20 {
		t.Errorf("failure = %v over %d; want 0.2 over 20", c.SessionFailureThreshold, c.SessionFailureWindow)
	}
	if len(c.CORSAllowedOrigins) != 1 || c.CORSAllowedOrigins[0] != "*" {
		t.Errorf("CORSAllowedOrigins = %v; want [*]", c.CORSAllowedOrigins)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	c, err := config.Load("", env(map[string]string{
		"PORT":                     "9100",
		"API_PASSWORD":             "key1, key2,",
		"IP_ALLOWLIST":             "10.0.0.0/8,127.0.0.1",
		"SESSION_MAX_AGE_HOURS":    "1.5",
		"DATABASE_URL":             "postgres://u@h/db",
		"GROKPROXY_ENCRYPTION_KEY": "k1:" + strings.Repeat("A", 43) + "=",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 9100 {
		t.Errorf("Port = %d; want 9100", c.Port)
	}
	if len(c.APIPasswords) != 2 || c.APIPasswords[1].Reveal() != "key2" {
		t.Errorf("APIPasswords = %d keys; want key1, key2", len(c.APIPasswords))
	}
	if len(c.IPAllowlist) != 2 || c.IPAllowlist[1].String() != "127.0.0.1/32" {
		t.Errorf("IPAllowlist = %v; want [10.0.0.0/8 127.0.0.1/32]", c.IPAllowlist)
	}
	if c.SessionMaxAge != 90*time.Minute {
		t.Errorf("SessionMaxAge = %v; want 1h30m", c.SessionMaxAge)
	}
	if !c.IsPostgres() {
		t.Error("IsPostgres() = false for a postgres:// URL")
	}
}

func TestInvalidSettingNamesIt(t *testing.T) {
	cases := map[string]map[string]string{
		"PORT":                      {"PORT": "eighty"},
		"IP_ALLOWLIST":              {"IP_ALLOWLIST": "10.0.0.0/99"},
		"STORE_CONTENT":             {"STORE_CONTENT": "some"},
		"SESSION_FAILURE_THRESHOLD": {"SESSION_FAILURE_THRESHOLD": "2"},
		"GROKPROXY_ENCRYPTION_KEY":  {"DATABASE_URL": "postgres://u@h/db"},
		"REQUEST_TIMEOUT":           {"REQUEST_TIMEOUT": "5"},
		"MAX_ATTEMPTS":              {"MAX_ATTEMPTS": "0"},
		"GC_HEADROOM_MB":            {"GC_HEADROOM_MB": "-1"},
		"LOG_FLUSH_INTERVAL":        {"LOG_FLUSH_INTERVAL": "-1s"},
	}
	for name, vars := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := config.Load("", env(vars))
			if err == nil {
				t.Fatal("Load succeeded; want an error")
			}
			if !strings.HasPrefix(err.Error(), name) {
				t.Errorf("error %q does not start with the setting name %s", err, name)
			}
		})
	}
}

func TestSecretFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin")
	if err := os.WriteFile(path, []byte("adm-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load("", env(map[string]string{"ADMIN_API_KEYS_FILE": path}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AdminAPIKeys) != 1 || c.AdminAPIKeys[0].Reveal() != "adm-secret" {
		t.Fatalf("AdminAPIKeys from file = %d keys; want one adm-secret", len(c.AdminAPIKeys))
	}
	_, err = config.Load("", env(map[string]string{"ADMIN_API_KEYS_FILE": path, "ADMIN_API_KEYS": "x"}))
	if err == nil {
		t.Fatal("Load with both ADMIN_API_KEYS and ADMIN_API_KEYS_FILE succeeded")
	}
}

func TestConfigFileAndPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grokproxy.yaml")
	text := "port: 7000\nlog_level: debug\napi_password: [a, b]\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, env(map[string]string{"LOG_LEVEL": "warn"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 7000 {
		t.Errorf("Port = %d; want 7000 from the file", c.Port)
	}
	if c.LogLevel != "warn" {
		t.Errorf("LogLevel = %q; want warn from the environment", c.LogLevel)
	}
	if len(c.APIPasswords) != 2 {
		t.Errorf("APIPasswords = %d; want 2 from the file list", len(c.APIPasswords))
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("no_such_setting: 1\n"), 0o600)
	if _, err := config.Load(bad, env(nil)); err == nil || !strings.Contains(err.Error(), "no_such_setting") {
		t.Fatalf("unknown key error = %v; want it named", err)
	}
}

func TestRateLimitSettings(t *testing.T) {
	c, err := config.Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.RateLimitFailMode != "open" || c.AuthFailureLimitPerMinute != 20 || c.RedisKeyPrefix != "grokproxy:" {
		t.Errorf("defaults = %q, %d, %q; want open, 20, grokproxy:",
			c.RateLimitFailMode, c.AuthFailureLimitPerMinute, c.RedisKeyPrefix)
	}
	c, err = config.Load("", env(map[string]string{"RATE_LIMIT_FAIL_MODE": "closed", "AUTH_FAILURE_LIMIT_PER_MINUTE": "0"}))
	if err != nil || c.RateLimitFailMode != "closed" || c.AuthFailureLimitPerMinute != 0 {
		t.Errorf("Load = %q, %d, %v; want closed, 0", c.RateLimitFailMode, c.AuthFailureLimitPerMinute, err)
	}
	for name, value := range map[string]string{"RATE_LIMIT_FAIL_MODE": "sometimes", "AUTH_FAILURE_LIMIT_PER_MINUTE": "-1"} {
		if _, err := config.Load("", env(map[string]string{name: value})); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: error %v; want one naming the setting", name, value, err)
		}
	}
}
