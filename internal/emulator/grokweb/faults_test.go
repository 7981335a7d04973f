package grokweb_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

func TestRequestFaults(t *testing.T) {
	tests := []struct {
		name           string
		fault          grokweb.Fault
		wantStatus     int
		wantType       string // Content-Type prefix
		wantBody       []string
		wantRetryAfter string
	}{
		{
			name:       "unauthorized",
			fault:      grokweb.Fault{Kind: grokweb.FaultUnauthorized},
			wantStatus: http.StatusUnauthorized,
			wantType:   "application/json",
			wantBody:   []string{"invalid-credentials", `"code":16`},
		},
		{
			name:       "antibot",
			fault:      grokweb.Fault{Kind: grokweb.FaultAntiBot},
			wantStatus: http.StatusForbidden,
			wantType:   "application/json",
			wantBody:   []string{`{"error":{"code":7,"message":"Request rejected by anti-bot rules.","details":[]}}`},
		},
		{
			name:       "cloudflare",
			fault:      grokweb.Fault{Kind: grokweb.FaultCloudflare},
			wantStatus: http.StatusForbidden,
			wantType:   "text/html",
			wantBody:   []string{"Just a moment...", "challenge-platform", "__cf_chl", "cf-chl-", "window._cf_chl_opt"},
		},
		{
			name:       "server error default",
			fault:      grokweb.Fault{Kind: grokweb.FaultServerError},
			wantStatus: http.StatusServiceUnavailable,
			wantType:   "application/json",
			wantBody:   []string{`"code":14`},
		},
		{
			name:       "server error 502",
			fault:      grokweb.Fault{Kind: grokweb.FaultServerError, Status: http.StatusBadGateway},
			wantStatus: http.StatusBadGateway,
			wantType:   "application/json",
			wantBody:   []string{"Bad Gateway"},
		},
		{
			name:           "rate limited",
			fault:          grokweb.Fault{Kind: grokweb.FaultRateLimited, RetryAfter: 90 * time.Second},
			wantStatus:     http.StatusTooManyRequests,
			wantType:       "application/json",
			wantBody:       []string{`{"error":{"code":8,"message":"Too many requests","details":[]}}`},
			wantRetryAfter: "90",
		},
		{
			name:           "rate limited default retry",
			fault:          grokweb.Fault{Kind: grokweb.FaultRateLimited},
			wantStatus:     http.StatusTooManyRequests,
			wantType:       "application/json",
			wantRetryAfter: "60",
		},
		{
			name:       "blocked",
			fault:      grokweb.Fault{Kind: grokweb.FaultBlocked},
			wantStatus: http.StatusForbidden,
			wantType:   "application/json",
			wantBody:   []string{`"code":7`, "[WKE=unauthorized:blocked-user]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu, ts := startEmulator(t, grokweb.Config{})
			f := tt.fault
			f.Times = 1
			emu.SetFault(ssoA, f)

			resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi"))
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d; want %d", resp.StatusCode, tt.wantStatus)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type = %q; want %s", ct, tt.wantType)
			}
			for _, want := range tt.wantBody {
				if !bytes.Contains(body, []byte(want)) {
					t.Errorf("body %q lacks %q", body, want)
				}
			}
			if got := resp.Header.Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q; want %q", got, tt.wantRetryAfter)
			}

			other := call(t, ts, http.MethodPost, newPath, ssoB, newChat("auto", "hi"))
			if other.StatusCode != http.StatusOK {
				t.Errorf("other account status = %d; want 200", other.StatusCode)
			}
			again := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi"))
			if again.StatusCode != http.StatusOK {
				t.Errorf("status after Times ran out = %d; want 200", again.StatusCode)
			}
			if n := emu.ChatCount(ssoA); n != 2 {
				t.Errorf("ChatCount = %d; want 2", n)
			}
		})
	}
}

func TestFaultForever(t *testing.T) {
	emu, ts := startEmulator(t, grokweb.Config{})
	emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultServerError, Status: 500})
	for i := range 3 {
		if resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi")); resp.StatusCode != 500 {
			t.Fatalf("request %d status = %d; want 500", i, resp.StatusCode)
		}
	}
	emu.ClearFaults()
	if resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi")); resp.StatusCode != 200 {
		t.Errorf("status after ClearFaults = %d; want 200", resp.StatusCode)
	}
}

func TestFaultsOnlyHitChat(t *testing.T) {
	emu, ts := startEmulator(t, grokweb.Config{})
	emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultAntiBot, Times: 1})
	if resp := call(t, ts, http.MethodPost, "/rest/rate-limits", ssoA, map[string]string{"modelName": "fast"}); resp.StatusCode != 200 {
		t.Errorf("rate-limits status = %d; want 200", resp.StatusCode)
	}
	if resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi")); resp.StatusCode != 403 {
		t.Errorf("chat status = %d; want 403", resp.StatusCode)
	}
}

func TestFaultSlowFirstByte(t *testing.T) {
	emu, ts := startEmulator(t, grokweb.Config{})
	const delay = 300 * time.Millisecond
	emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultSlowFirstByte, Delay: delay, Times: 1})

	start := time.Now()
	resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi"))
	if elapsed := time.Since(start); elapsed < delay {
		t.Errorf("headers after %v; want at least %v", elapsed, delay)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d; want 200", resp.StatusCode)
	}
	if findResponse(readFrames(t, resp), "modelResponse") == nil {
		t.Error("slow stream lacks modelResponse")
	}
}

func TestFaultCut(t *testing.T) {
	emu, ts := startEmulator(t, grokweb.Config{})
	emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultCut, AfterFrames: 5, Times: 1})
	resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d; want 200", resp.StatusCode)
	}
	frames, err := scanFrames(resp.Body)
	if err == nil {
		t.Error("cut stream ended cleanly; want a read error")
	}
	if len(frames) != 5 {
		t.Errorf("frames before the cut = %d; want 5", len(frames))
	}
	if findResponse(frames, "modelResponse") != nil {
		t.Error("cut stream carried modelResponse")
	}
}

func TestFaultErrorFrame(t *testing.T) {
	emu, ts := startEmulator(t, grokweb.Config{})
	emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultErrorFrame, AfterFrames: 6, Times: 1})
	resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d; want 200", resp.StatusCode)
	}
	frames := readFrames(t, resp)
	if len(frames) != 7 {
		t.Fatalf("frames = %d; want 6 and the error", len(frames))
	}
	last := frames[6]
	if errorCode(last) != 8 || errorMessage(last) != "Too many requests" {
		t.Errorf("last frame = %v; want top-level error code 8", last)
	}
	if findResponse(frames, "modelResponse") != nil {
		t.Error("stream with an error frame carried modelResponse")
	}
}

func TestTokenDelay(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{TokenDelay: 20 * time.Millisecond, Chunks: 10})
	start := time.Now()
	resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi"))
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadBytes('\n'); err != nil {
		t.Fatal(err)
	}
	frames, err := scanFrames(rd)
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < 10*20*time.Millisecond {
		t.Errorf("stream of 10 delayed tokens took %v; want at least 200ms", elapsed)
	}
	if findResponse(frames, "modelResponse") == nil {
		t.Error("stream lacks modelResponse")
	}
}

func TestControlEndpoint(t *testing.T) {
	emu, ts := startEmulator(t, grokweb.Config{})
	post := func(body string) *http.Response {
		resp, err := ts.Client().Post(ts.URL+"/_emulator/faults", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	resp := post(`{"sso":"` + ssoA + `","kind":"rate_limited","times":2,"retry_after":"30s"}`)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST faults status = %d; want 204", resp.StatusCode)
	}
	chat := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi"))
	if chat.StatusCode != 429 || chat.Header.Get("Retry-After") != "30" {
		t.Errorf("chat = %d Retry-After %q; want 429 and 30", chat.StatusCode, chat.Header.Get("Retry-After"))
	}

	stats := decodeJSON(t, call(t, ts, http.MethodGet, "/_emulator/stats", "", nil))
	if bytes.Contains(mustJSON(t, stats), []byte(ssoA)) {
		t.Error("stats expose a cookie value")
	}
	accounts := stats["accounts"].([]any)
	if len(accounts) != 2 {
		t.Fatalf("stats accounts = %d; want 2", len(accounts))
	}
	found := false
	for _, a := range accounts {
		a := a.(map[string]any)
		if a["chats"] == 1.0 && a["fault"] == "rate_limited" {
			found = true
		}
	}
	if !found {
		t.Errorf("stats %v lack the account with 1 chat and a rate_limited fault", accounts)
	}

	req, _ := http.NewRequest(http.MethodDelete, ts.URL+"/_emulator/faults", nil)
	del, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	del.Body.Close()
	if del.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE faults status = %d; want 204", del.StatusCode)
	}
	if chat := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi")); chat.StatusCode != 200 {
		t.Errorf("chat after DELETE = %d; want 200", chat.StatusCode)
	}
	for _, r := range emu.Requests() {
		if strings.HasPrefix(r.Path, "/_emulator/") {
			t.Errorf("control request %s recorded", r.Path)
		}
	}
}

func TestControlEndpointInvalid(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	tests := []struct{ name, body string }{
		{"unknown kind", `{"sso":"a","kind":"meltdown"}`},
		{"missing sso", `{"kind":"cut"}`},
		{"bad duration", `{"sso":"a","kind":"slow_first_byte","delay":"soon"}`},
		{"non-5xx status", `{"sso":"a","kind":"server_error","status":404}`},
		{"negative times", `{"sso":"a","kind":"cut","times":-1}`},
		{"not JSON", `{`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := ts.Client().Post(ts.URL+"/_emulator/faults", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status = %d; want 400", resp.StatusCode)
			}
		})
	}
}

func TestControlEndpointCut(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	body := `{"sso":"` + ssoA + `","kind":"cut","after_frames":2,"times":1}`
	resp, err := ts.Client().Post(ts.URL+"/_emulator/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	frames, err := scanFrames(call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi")).Body)
	if err == nil || len(frames) != 2 {
		t.Errorf("got %d frames, error %v; want 2 frames and a read error", len(frames), err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
