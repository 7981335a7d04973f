package main

import (
	"encoding/json"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	emulator "github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/keyring"
)

const (
	checkSSOLive = "check-sso-live-0001"
	checkSSODead = "check-sso-dead-0002"
)

// checkReport is the part of "sessions check -json" the tests read.
type checkReport struct {
	SessionID  string `json:"session_id"`
	Provider   string `json:"provider"`
	Login      bool   `json:"login"`
	AccountID  string `json:"account_id"`
	Tier       string `json:"tier"`
	Usable     bool   `json:"usable"`
	Transports map[string]struct {
		Status string `json:"status"`
	} `json:"transports"`
	Problems []string `json:"problems"`
}

// checkEnv starts an emulator with two super accounts, imports both
// cookies into a new store and returns the emulator and the session ids
// by user id ("u-live-0001", "u-dead-0002").
func checkEnv(t *testing.T) (*emulator.Server, map[string]string) {
	t.Helper()
	emu := emulator.New(emulator.Config{Accounts: []emulator.Account{
		{SSO: checkSSOLive, Tier: emulator.TierSuper, UserID: "u-live-0001"},
		{SSO: checkSSODead, Tier: emulator.TierSuper, UserID: "u-dead-0002"},
	}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	db := sessionsEnv(t, keyring.Generate())
	t.Setenv("GROK_BASE_URL", srv.URL)
	t.Setenv("GROK_CHAT_TRANSPORT", "auto")

	path := writeFile(t, "cookies.txt", "sso="+checkSSOLive+"\nsso="+checkSSODead+"\n")
	if code, out, errOut := runSessions(t, "import", path); code != 0 {
		t.Fatalf("import exit %d: %s %s", code, out, errOut)
	}
	ids := map[string]string{}
	for _, s := range storedSessions(t, db) {
		code, out, errOut := runSessions(t, "check", s.ID, "-json")
		if code != 0 {
			t.Fatalf("check %s exit %d: %s %s", s.ID, code, out, errOut)
		}
		var rep checkReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("check -json output: %v\n%s", err, out)
		}
		ids[rep.AccountID] = s.ID
	}
	if ids["u-live-0001"] == "" || ids["u-dead-0002"] == "" {
		t.Fatalf("sessions by account = %v; want both accounts", ids)
	}
	return emu, ids
}

func TestSessionsCheckExitCodes(t *testing.T) {
	emu, ids := checkEnv(t)

	code, out, errOut := runSessions(t, "check", ids["u-live-0001"])
	if code != 0 {
		t.Fatalf("check of a live session exit %d: %s %s", code, out, errOut)
	}
	t.Logf("text report:\n%s", out)
	for _, want := range []string{"tier", "super", "transport rest", "transport ws", "selector modeId"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^usable +yes$`).MatchString(out) {
		t.Errorf("text report does not say usable yes:\n%s", out)
	}

	emu.RemoveAccount(checkSSODead)
	code, out, errOut = runSessions(t, "check", "-json", ids["u-dead-0002"])
	if code != 1 {
		t.Fatalf("check of a dead session exit %d; want 1: %s %s", code, out, errOut)
	}
	var rep checkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("check -json output: %v\n%s", err, out)
	}
	if rep.Login || rep.Usable || rep.SessionID != ids["u-dead-0002"] || rep.Provider != "grok" || len(rep.Problems) == 0 {
		t.Errorf("dead session report = %+v; want no login, not usable, with problems", rep)
	}
	if strings.Contains(out+errOut, checkSSODead) {
		t.Errorf("the cookie reached the output:\n%s\n%s", out, errOut)
	}

	emu.SetRefuseUpgrade(true)
	t.Setenv("GROK_CHAT_TRANSPORT", "ws")
	code, out, _ = runSessions(t, "check", ids["u-live-0001"])
	if code != 1 || !regexp.MustCompile(`(?m)^usable +no$`).MatchString(out) || !strings.Contains(out, "transport ws") {
		t.Errorf("check with the gateway refused on ws exit %d; want 1:\n%s", code, out)
	}

	code, _, errOut = runSessions(t, "check", "no-such-session")
	if code != 1 || !strings.Contains(errOut, "no-such-session") {
		t.Errorf("check of an unknown id exit %d, stderr %q; want 1 naming the id", code, errOut)
	}
	if n := emu.ChatCount(checkSSOLive); n != 0 {
		t.Errorf("chat count = %d; want 0", n)
	}
}

func TestSessionsCheckUsage(t *testing.T) {
	code, out, _ := runSessions(t, "check", "-h")
	if code != 0 || !strings.Contains(out, "-json") || !strings.Contains(out, "-timeout") {
		t.Errorf("check -h exit %d:\n%s", code, out)
	}
	code, _, errOut := runSessions(t, "check")
	if code != 2 || !strings.Contains(errOut, "missing session ID") {
		t.Errorf("check without id exit %d, stderr %q; want 2", code, errOut)
	}
}
