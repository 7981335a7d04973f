package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// sessionCheck is the part of POST /admin/sessions/{id}/check the test
// reads.
type sessionCheck struct {
	SessionID  string `json:"session_id"`
	Provider   string `json:"provider"`
	Login      bool   `json:"login"`
	Tier       string `json:"tier"`
	Usable     bool   `json:"usable"`
	Transports map[string]struct {
		Status string `json:"status"`
	} `json:"transports"`
	Selectors map[string]struct {
		Status string `json:"status"`
	} `json:"selectors"`
	Quota    map[string]struct{ Remaining, Total int } `json:"quota"`
	Problems []string                                  `json:"problems"`
}

func (g *gateway) checkSession(t *testing.T, id string) (int, sessionCheck, string) {
	t.Helper()
	res := g.admin(http.MethodPost, "/admin/sessions/"+id+"/check", nil)
	var c sessionCheck
	if res.Status == http.StatusOK {
		if err := json.Unmarshal(res.Body, &c); err != nil {
			t.Fatalf("check response: %v\n%s", err, res.Body)
		}
	}
	return res.Status, c, string(res.Body)
}

func TestAdminSessionCheck(t *testing.T) {
	m := startMixedGateway(t, sqliteStore, true, xaiKeyA)
	g := m.gateway

	res := g.admin(http.MethodGet, "/admin/sessions?provider=grok", nil)
	var list struct {
		Data []struct{ ID string } `json:"data"`
	}
	if err := json.Unmarshal(res.Body, &list); err != nil || len(list.Data) != 2 {
		t.Fatalf("list grok sessions: %d %s", res.Status, res.Body)
	}
	for _, s := range list.Data {
		status, c, body := g.checkSession(t, s.ID)
		if status != http.StatusOK || !c.Usable || !c.Login || c.Provider != "grok" || c.SessionID != s.ID {
			t.Fatalf("check %s: %d %s; want a usable grok session", s.ID, status, body)
		}
		if c.Transports["rest"].Status != "ok" || c.Transports["ws"].Status != "ok" || c.Selectors["modeId"].Status != "ok" {
			t.Errorf("transports, selectors = %+v, %+v; want rest, ws and modeId ok", c.Transports, c.Selectors)
		}
		if len(c.Quota) == 0 || c.Quota["fast"].Total == 0 {
			t.Errorf("quota = %+v; want the fast quota", c.Quota)
		}
		if strings.Contains(body, ssoA) || strings.Contains(body, ssoB) {
			t.Errorf("the check response carries a cookie: %s", body)
		}
	}

	status, c, body := g.checkSession(t, m.xaiID[xaiKeyA])
	if status != http.StatusOK || !c.Usable || c.Provider != "xai" || c.Transports["api"].Status != "ok" {
		t.Errorf("check of the xai session: %d %s; want usable with the api ok", status, body)
	}
	if strings.Contains(body, xaiKeyA) {
		t.Errorf("the check response carries the API key: %s", body)
	}

	if status, _, body := g.checkSession(t, "ses_unknown"); status != http.StatusNotFound {
		t.Errorf("check of an unknown id: %d %s; want 404", status, body)
	}

	// Both logins die; a check now reports the session unusable.
	g.Emu.RemoveAccount(ssoA)
	g.Emu.RemoveAccount(ssoB)
	status, c, body = g.checkSession(t, list.Data[0].ID)
	if status != http.StatusOK || c.Usable || c.Login || len(c.Problems) == 0 {
		t.Errorf("check of a dead login: %d %s; want 200, not usable, with problems", status, body)
	}

	if n := m.grokChats() + m.xaiChats(); n != 0 {
		t.Errorf("chats sent by checks = %d; want 0", n)
	}
}
