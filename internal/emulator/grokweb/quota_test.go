package grokweb_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

func rateLimits(t *testing.T, resp *http.Response) (remaining, total, window float64) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("rate-limits status = %d; want 200", resp.StatusCode)
	}
	body := decodeJSON(t, resp)
	for _, k := range []string{"lowEffortRateLimits", "highEffortRateLimits"} {
		if v, ok := body[k]; !ok || v != nil {
			t.Errorf("%s = %v, present %v; want null", k, v, ok)
		}
	}
	return body["remainingQueries"].(float64), body["totalQueries"].(float64), body["windowSizeSeconds"].(float64)
}

func TestRateLimitsTiers(t *testing.T) {
	tests := []struct {
		tier       string
		body       map[string]string
		wantTotal  float64
		wantWindow float64
	}{
		{grokweb.TierBasic, map[string]string{"modelName": "fast"}, 30, 86400},
		{grokweb.TierBasic, map[string]string{"modelName": "expert"}, 0, 7200},
		{grokweb.TierSuper, map[string]string{"modelName": "auto"}, 50, 7200},
		{grokweb.TierSuper, map[string]string{"modelName": "fast"}, 140, 7200},
		{grokweb.TierSuper, map[string]string{"modelName": "expert"}, 50, 7200},
		{grokweb.TierSuper, map[string]string{"modelName": "heavy"}, 0, 7200},
		{grokweb.TierHeavy, map[string]string{"modelName": "auto"}, 150, 7200},
		{grokweb.TierHeavy, map[string]string{"modelName": "fast"}, 400, 7200},
		{grokweb.TierHeavy, map[string]string{"modelName": "expert"}, 150, 7200},
		{grokweb.TierHeavy, map[string]string{"modelName": "heavy"}, 20, 7200},
		{grokweb.TierHeavy, map[string]string{"requestKind": "REASONING", "modelName": "grok-3"}, 150, 7200},
		{grokweb.TierUnlimited, map[string]string{"modelName": "heavy"}, 100000, 7200},
		{grokweb.TierUnlimited, map[string]string{"requestKind": "DEFAULT", "modelName": "grok-3"}, 100000, 7200},
	}
	for _, tt := range tests {
		t.Run(tt.tier+" "+tt.body["modelName"]+" "+tt.body["requestKind"], func(t *testing.T) {
			_, ts := startEmulator(t, grokweb.Config{Accounts: []grokweb.Account{{SSO: ssoA, Tier: tt.tier}}})
			remaining, total, window := rateLimits(t, call(t, ts, http.MethodPost, "/rest/rate-limits", ssoA, tt.body))
			if total != tt.wantTotal || remaining != tt.wantTotal {
				t.Errorf("remaining/total = %v/%v; want %v/%v", remaining, total, tt.wantTotal, tt.wantTotal)
			}
			if window != tt.wantWindow {
				t.Errorf("windowSizeSeconds = %v; want %v", window, tt.wantWindow)
			}
		})
	}
}

func TestRateLimitsInvalid(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	for _, body := range []map[string]string{
		{"modelName": "gpt-4"},
		{"modelName": "fast", "requestKind": "TURBO"},
	} {
		if resp := call(t, ts, http.MethodPost, "/rest/rate-limits", ssoA, body); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %v: status = %d; want 400", body, resp.StatusCode)
		}
	}
}

func TestQuotaSpentAndReset(t *testing.T) {
	clock := newFakeClock()
	emu, ts := startEmulator(t, grokweb.Config{
		Accounts: []grokweb.Account{{SSO: ssoA, Tier: grokweb.TierBasic}},
		Now:      clock.Now,
		Chunks:   2,
	})
	limits := func(mode string) (float64, float64) {
		remaining, total, _ := rateLimits(t, call(t, ts, http.MethodPost, "/rest/rate-limits", ssoA, map[string]string{"modelName": mode}))
		return remaining, total
	}

	for i := range 30 {
		resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("fast", "hi"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("chat %d status = %d; want 200", i, resp.StatusCode)
		}
		readFrames(t, resp)
		if i == 0 {
			if remaining, total := limits("fast"); remaining != 29 || total != 30 {
				t.Errorf("after one chat remaining/total = %v/%v; want 29/30", remaining, total)
			}
		}
	}
	if remaining, _ := limits("fast"); remaining != 0 {
		t.Errorf("remaining after 30 chats = %v; want 0", remaining)
	}
	if remaining, _ := limits("auto"); remaining != 20 {
		t.Errorf("auto remaining = %v; want 20, untouched by fast chats", remaining)
	}

	clock.Advance(time.Hour)
	resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("fast", "hi"))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("chat over quota status = %d; want 429", resp.StatusCode)
	}
	body := decodeJSON(t, resp)
	if errorCode(body) != 8 || errorMessage(body) != "Too many requests" {
		t.Errorf("429 body = %v; want code 8 Too many requests", body)
	}
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || retry != 23*3600 {
		t.Errorf("Retry-After = %q; want %d (the rest of the day window)", resp.Header.Get("Retry-After"), 23*3600)
	}
	if resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hi")); resp.StatusCode != http.StatusOK {
		t.Errorf("auto chat status = %d; want 200 while fast is spent", resp.StatusCode)
	}

	clock.Advance(23 * time.Hour)
	if resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("fast", "hi")); resp.StatusCode != http.StatusOK {
		t.Fatalf("chat after the window status = %d; want 200", resp.StatusCode)
	}
	if remaining, _ := limits("fast"); remaining != 29 {
		t.Errorf("remaining in the new window = %v; want 29", remaining)
	}
	if n := emu.ChatCount(ssoA); n != 33 {
		t.Errorf("ChatCount = %d; want 33 (the 429 counts)", n)
	}
}

func TestUnlimitedQuota(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{Chunks: 1})
	for i := range 1000 {
		resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("heavy", "hi"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("chat %d status = %d; want 200", i, resp.StatusCode)
		}
		readFrames(t, resp)
	}
	remaining, total, _ := rateLimits(t, call(t, ts, http.MethodPost, "/rest/rate-limits", ssoA, map[string]string{"modelName": "heavy"}))
	if total-remaining != 1000 {
		t.Errorf("spent = %v; want 1000", total-remaining)
	}
}

func TestMediaQuota(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	body := decodeJSON(t, call(t, ts, http.MethodPost, "/rest/media/imagine/quota_info", ssoA, map[string]any{}))
	for _, k := range []string{"image", "imagePro", "imageEdit", "video", "video720p"} {
		if _, ok := body[k]; !ok {
			t.Errorf("quota_info lacks %q", k)
		}
	}
	image, ok := body["image"].(map[string]any)
	if !ok || image["available"] != true || image["windowSizeSeconds"] != 86400.0 {
		t.Errorf("image quota = %v; want available with a 86400 s window", body["image"])
	}
}
