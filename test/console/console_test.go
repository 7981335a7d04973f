package console

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// sessionList is the response body of GET /admin/sessions.
type sessionList struct {
	Data []struct {
		ID     string `json:"id"`
		Label  string `json:"label"`
		Status string `json:"status"`
	} `json:"data"`
}

// waitCount waits until selector matches want elements.
func waitCount(selector string, want int) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](fmt.Sprintf("document.querySelectorAll(%s).length === %d", jsString(selector), want),
		chromedp.WithPollingTimeout(15*time.Second))
}

// css is a CSS selector for the first match.
func css(selector string) chromedp.CSS { return chromedp.CSS(selector) }

// evaluate runs a statement whose value does not matter.
func evaluate(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](expr)(ctx, t)
		return err
	})
}

// colorScheme emulates prefers-color-scheme.
func colorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	})
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// confirm clicks OK in the confirmation dialog.
func confirm() chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(css(`#confirm[open] #confirm-ok`)),
		chromedp.Click(css(`#confirm-ok`)),
		chromedp.WaitNotPresent(css(`#confirm[open]`)),
	)
}

func TestConsoleWorkflow(t *testing.T) {
	g := startGateway(t)
	b := startBrowser(t)

	// Sign in: the key stays in sessionStorage, never in a cookie or the URL.
	b.run(t, "sign in",
		chromedp.Navigate(g.URL+"/console/"),
		chromedp.WaitVisible(css(`#signin-key`)),
		chromedp.SendKeys(css(`#signin-key`), g.AdminKey),
		chromedp.Click(css(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#card-requests`)),
		chromedp.WaitVisible(css(`#card-circuits`)),
	)
	stored := read(t, b, "read storage", chromedp.Evaluate[string](`sessionStorage.getItem('grokproxy.adminKey') || ''`))
	cookies := read(t, b, "read cookies", chromedp.Evaluate[string](`document.cookie`))
	href := read(t, b, "read URL", chromedp.Evaluate[string](`location.href`))
	if stored != g.AdminKey {
		t.Errorf("sessionStorage holds %.6q…; want the admin key", stored)
	}
	if cookies != "" {
		t.Errorf("document.cookie = %q; want none", cookies)
	}
	if strings.Contains(href, g.AdminKey) {
		t.Error("the admin key appears in the URL")
	}

	// Paste two sessions at once and see both in the table.
	b.run(t, "add sessions",
		chromedp.Click(css(`#nav a[data-page=sessions]`)),
		chromedp.WaitVisible(css(`#session-credentials`)),
		chromedp.SetValue(css(`#session-credentials`), "sso="+ssoA+"\nsso="+ssoB),
		chromedp.SendKeys(css(`#session-label`), "from-console"),
		chromedp.Click(css(`#session-add`)),
		waitCount(`#sessions-table tbody tr[data-id]`, 2),
	)
	credsLeft := read(t, b, "read credential field", chromedp.Value(css(`#session-credentials`)))
	if credsLeft != "" {
		t.Error("the credential field still holds the pasted cookies after adding")
	}
	var sessions sessionList
	if code := g.do(http.MethodGet, "/admin/sessions", g.AdminKey, nil, &sessions); code != http.StatusOK || len(sessions.Data) != 2 {
		t.Fatalf("GET /admin/sessions: %d, %d sessions; want 200, 2", code, len(sessions.Data))
	}
	for _, s := range sessions.Data {
		if s.Label != "from-console" || s.Status != "healthy" {
			t.Errorf("session %s: label %q, status %q; want from-console, healthy", s.ID, s.Label, s.Status)
		}
	}

	// Quarantine the first, through the confirmation dialog.
	target := sessions.Data[0].ID
	row := `#sessions-table tr[data-id="` + target + `"]`
	b.run(t, "cancel quarantine",
		chromedp.Click(row+` button[data-action=quarantine]`),
		chromedp.WaitVisible(css(`#confirm[open] #confirm-cancel`)),
		chromedp.Click(css(`#confirm-cancel`)),
		chromedp.WaitNotPresent(css(`#confirm[open]`)),
	)
	var s1 sessionList
	g.do(http.MethodGet, "/admin/sessions?status=quarantined", g.AdminKey, nil, &s1)
	if len(s1.Data) != 0 {
		t.Fatalf("a canceled confirmation quarantined %d sessions", len(s1.Data))
	}
	// Cancel the confirmation for the other session and open the one for the
	// first in the same task, before the browser delivers the close event of
	// the canceled dialog. Only the first session may be quarantined.
	other := `#sessions-table tr[data-id="` + sessions.Data[1].ID + `"] button[data-action=quarantine]`
	b.run(t, "quarantine",
		evaluate(`document.querySelector(`+jsString(other)+`).click();
			document.querySelector('#confirm-cancel').click();
			document.querySelector(`+jsString(row+` button[data-action=quarantine]`)+`).click();`),
		confirm(),
		chromedp.WaitVisible(row+`[data-status=quarantined]`),
	)
	g.do(http.MethodGet, "/admin/sessions?status=quarantined", g.AdminKey, nil, &s1)
	if len(s1.Data) != 1 || s1.Data[0].ID != target {
		t.Fatalf("quarantined sessions = %+v; want only %s", s1.Data, target)
	}

	// Create a user and a key; the key is shown once.
	b.run(t, "create user",
		chromedp.Click(css(`#nav a[data-page=users]`)),
		chromedp.WaitVisible(css(`#user-name`)),
		chromedp.SendKeys(css(`#user-name`), "console-user"),
		chromedp.SendKeys(css(`#user-rate`), "120"),
		chromedp.Click(css(`#user-create`)),
		chromedp.WaitVisible(css(`#user-detail-title`)),
		chromedp.Click(css(`#key-create`)),
		chromedp.WaitVisible(css(`#new-key-value`)),
		chromedp.WaitVisible(css(`#keys-table tbody tr[data-id]`)),
	)
	key := read(t, b, "read new key", chromedp.Value(css(`#new-key-value`)))
	if len(key) < 20 {
		t.Fatalf("shown key %q is too short to be a key", key)
	}
	b.run(t, "dismiss key",
		chromedp.Click(css(`#new-key-done`)),
		chromedp.WaitNotPresent(css(`#new-key-value`)),
	)
	keyOnPage := read(t, b, "look for the key", chromedp.Evaluate[bool](
		`document.documentElement.outerHTML.includes(`+jsString(key)+`) ||
			[...document.querySelectorAll('input, textarea')].some((e) => e.value.includes(`+jsString(key)+`))`))
	if keyOnPage {
		t.Error("the key is still on the page after Done")
	}
	b.run(t, "reopen user",
		chromedp.Click(css(`#users-table button[data-action=open-user]`)),
		chromedp.WaitVisible(css(`#keys-table tbody tr[data-id]`)),
	)
	keyOnPage = read(t, b, "look for the key again",
		chromedp.Evaluate[bool](`document.documentElement.outerHTML.includes(`+jsString(key)+`)`))
	if keyOnPage {
		t.Error("the key is shown again after reopening the user")
	}

	// A chat call with the new key shows up in recent requests.
	var chat struct {
		Model string `json:"model"`
	}
	code := g.do(http.MethodPost, "/v1/chat/completions", key, map[string]any{
		"model": "grok-3", "messages": []map[string]string{{"role": "user", "content": "hello from the console test"}},
	}, &chat)
	if code != http.StatusOK {
		t.Fatalf("chat with the console key: status %d", code)
	}
	g.waitGenerations(1)
	b.run(t, "recent requests",
		chromedp.Click(css(`#nav a[data-page=requests]`)),
		chromedp.WaitVisible(css(`#requests-table tbody tr[data-id]`)),
	)
	rowText := read(t, b, "read request row", chromedp.TextContent(css(`#requests-table tbody tr[data-id]`)))
	for _, want := range []string{"grok-3", "console-user", "200", "hello from the console test"} {
		if !strings.Contains(rowText, want) {
			t.Errorf("recent request row %q lacks %q", rowText, want)
		}
	}

	// The overview counts the request.
	b.run(t, "overview",
		chromedp.Click(css(`#nav a[data-page=overview]`)),
		chromedp.WaitVisible(css(`#card-requests .figure`)),
	)
	requests := read(t, b, "read request count", chromedp.TextContent(css(`#card-requests .figure`)))
	if strings.TrimSpace(requests) != "1" {
		t.Errorf("overview shows %q requests; want 1", requests)
	}

	// Every action is in the audit log.
	b.run(t, "audit log",
		chromedp.Click(css(`#nav a[data-page=audit]`)),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="session.create"]`)),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="session.quarantine"]`)),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="user.create"]`)),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="key.create"]`)),
	)

	// Signing out drops the key.
	b.run(t, "sign out",
		chromedp.Click(css(`#signout`)),
		chromedp.WaitVisible(css(`#signin-key`)),
	)
	stored = read(t, b, "read storage after sign-out", chromedp.Evaluate[string](`sessionStorage.getItem('grokproxy.adminKey') || ''`))
	if stored != "" {
		t.Error("sessionStorage still holds the admin key after sign-out")
	}
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(p, "\n"))
	}
}

func TestConsoleRejectsWrongKey(t *testing.T) {
	g := startGateway(t)
	b := startBrowser(t)
	b.run(t, "sign in with a wrong key",
		chromedp.Navigate(g.URL+"/console/"),
		chromedp.WaitVisible(css(`#signin-key`)),
		chromedp.SendKeys(css(`#signin-key`), "not-an-admin-key"),
		chromedp.Click(css(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#alert`)),
	)
	alert := read(t, b, "read alert", chromedp.TextContent(css(`#alert`)))
	stored := read(t, b, "read storage", chromedp.Evaluate[string](`sessionStorage.getItem('grokproxy.adminKey') || ''`))
	if !strings.Contains(alert, "rejected") {
		t.Errorf("alert %q; want a rejected-key message", alert)
	}
	if stored != "" {
		t.Error("a rejected key stays in sessionStorage")
	}
	navHidden := read(t, b, "read nav", chromedp.Evaluate[bool](`document.getElementById('nav').hidden`))
	if !navHidden {
		t.Error("the page navigation shows after a rejected sign-in")
	}
}

// TestConsoleScreenshots saves every page in light and dark mode at laptop
// and phone width into $CONSOLE_SCREENSHOTS, for a person to look at. It
// skips when that variable is unset.
func TestConsoleScreenshots(t *testing.T) {
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		t.Skip("set CONSOLE_SCREENSHOTS to a folder to save screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t)
	for _, sso := range []string{ssoA, ssoB} {
		g.do(http.MethodPost, "/admin/sessions", g.AdminKey, map[string]any{"cookie_text": "sso=" + sso, "label": "laptop-" + sso[12:16]}, nil)
	}
	var user struct {
		ID string `json:"id"`
	}
	g.do(http.MethodPost, "/admin/users", g.AdminKey, map[string]any{"name": "demo-user"}, &user)
	var key struct {
		Key string `json:"key"`
	}
	g.do(http.MethodPost, "/admin/users/"+user.ID+"/keys", g.AdminKey, map[string]any{"name": "laptop"}, &key)
	for i := range 6 {
		model := "grok-3"
		if i%3 == 2 {
			model = "no-such-model"
		}
		g.do(http.MethodPost, "/v1/chat/completions", key.Key, map[string]any{
			"model": model, "messages": []map[string]string{{"role": "user", "content": "question number " + string(rune('A'+i))}},
		}, nil)
	}
	g.waitGenerations(4)

	b := startBrowser(t)
	b.run(t, "sign in",
		chromedp.Navigate(g.URL+"/console/"),
		chromedp.WaitVisible(css(`#signin-key`)),
		chromedp.SendKeys(css(`#signin-key`), g.AdminKey),
		chromedp.Click(css(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#card-requests`)),
	)
	pages := map[string]string{
		"overview": `#card-requests`, "sessions": `#sessions-table`, "users": `#users-table`,
		"requests": `#requests-table`, "audit": `#audit-table`,
	}
	for _, scheme := range []string{"light", "dark"} {
		for _, vp := range []struct {
			name          string
			width, height int64
		}{{"laptop", 1366, 800}, {"phone", 390, 844}} {
			for page, ready := range pages {
				b.run(t, page,
					colorScheme(scheme),
					chromedp.EmulateViewport(vp.width, vp.height),
					evaluate(`location.hash = '#/`+page+`'`),
					chromedp.WaitVisible(css(ready)),
					chromedp.Sleep(200*time.Millisecond),
				)
				png := read(t, b, "screenshot", chromedp.FullScreenshot(100))
				name := filepath.Join(dir, page+"-"+scheme+"-"+vp.name+".png")
				if err := os.WriteFile(name, png, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	b.run(t, "users with new key",
		evaluate(`location.hash = '#/users'`),
		chromedp.Click(css(`#users-table button[data-action=open-user]`)),
		chromedp.Click(css(`#key-create`)),
		chromedp.WaitVisible(css(`#new-key-value`)),
	)
	png := read(t, b, "screenshot", chromedp.FullScreenshot(100))
	os.WriteFile(filepath.Join(dir, "users-new-key-dark-phone.png"), png, 0o644)
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(p, "\n"))
	}
}
