package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/config"
)

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBuiltinCommandsHelp(t *testing.T) {
	cases := []struct {
		cmd   string
		flags []string // flag names the help must describe
	}{
		{"serve", []string{"-config"}},
		{"migrate", []string{"-config"}},
		{"keygen", []string{"-o"}},
		{"settings", nil},
		{"version", nil},
	}
	for _, c := range cases {
		for _, h := range []string{"-h", "--help"} {
			t.Run(c.cmd+h, func(t *testing.T) {
				code, out, errOut := runCmd(c.cmd, h)
				if code != 0 {
					t.Fatalf("exit %d; stderr: %s", code, errOut)
				}
				if !strings.HasPrefix(out, "Usage: grokproxy "+c.cmd) {
					t.Errorf("help does not start with its usage line:\n%s", out)
				}
				for _, f := range c.flags {
					if !strings.Contains(out, "  "+f+" ") {
						t.Errorf("help does not describe %s:\n%s", f, out)
					}
				}
			})
		}
	}
}

func TestServeHelpNamesUnits(t *testing.T) {
	_, out, _ := runCmd("serve", "-h")
	for _, want := range []string{"SHUTDOWN_TIMEOUT", "grokproxy settings", "NAME_FILE", "path of a YAML settings file"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve help lacks %q:\n%s", want, out)
		}
	}
}

// TestSettingsSayWhatAndUnit checks that each setting's help is printed,
// and that numeric and duration settings state their unit.
func TestSettingsSayWhatAndUnit(t *testing.T) {
	code, out, _ := runCmd("settings")
	if code != 0 {
		t.Fatalf("settings exit %d", code)
	}
	units := []string{"bytes", "duration", "per minute", "per second", "hours", "requests", "connections",
		"cost", "0-1", "port", "tries", "messages", "header", "failed", "days", "records", "seconds", "mib"}
	for _, s := range config.Settings {
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, s.Name+" ") {
				line = l
			}
		}
		if line == "" || s.Help == "" {
			t.Errorf("setting %s is not listed with help", s.Name)
			continue
		}
		if s.Secret && !strings.Contains(line, "[secret; "+s.Name+"_FILE") {
			t.Errorf("secret setting %s is not marked: %s", s.Name, line)
		}
		if !numeric(s.Default) {
			continue
		}
		found := false
		for _, u := range units {
			found = found || strings.Contains(strings.ToLower(s.Help), u)
		}
		if !found {
			t.Errorf("numeric setting %s does not state its unit: %q", s.Name, s.Help)
		}
	}
}

func numeric(v string) bool {
	if v == "" {
		return false
	}
	for _, c := range v {
		if !strings.ContainsRune("0123456789.smhµn", c) {
			return false
		}
	}
	return true
}

func TestInvalidSettingStopsTheStart(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, value string }{
		{"PORT", "eighty"},
		{"SHUTDOWN_TIMEOUT", "soon"},
		{"LOG_LEVEL", "loud"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"},
		{"SENTRY_DSN", "not-a-dsn"},
		{"READY_REQUIRES_SESSION", "maybe"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("DATABASE_URL", filepath.Join(dir, c.name+".db"))
			t.Setenv("AUDIT_SPOOL_PATH", filepath.Join(dir, c.name+".spool"))
			t.Setenv("HOST", "127.0.0.1")
			t.Setenv("PORT", "0")
			t.Setenv(c.name, c.value)
			code, _, errOut := runCmd("serve")
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr: %s", code, errOut)
			}
			if !strings.Contains(errOut, c.name) {
				t.Errorf("the message does not name %s: %s", c.name, errOut)
			}
			if strings.Contains(errOut, "listening") {
				t.Errorf("the gateway started listening: %s", errOut)
			}
		})
	}
}

func TestBadFlagExitsTwo(t *testing.T) {
	code, _, errOut := runCmd("serve", "-no-such-flag")
	if code != 2 || !strings.Contains(errOut, "grokproxy serve -h") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
