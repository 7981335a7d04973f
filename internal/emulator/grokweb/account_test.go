package grokweb_test

import (
	"bytes"
	"encoding/base64"
	"image/jpeg"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

func TestInvalidLogin(t *testing.T) {
	routes := []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, newPath, newChat("auto", "hi")},
		{http.MethodPost, followUpPath("any"), map[string]any{"message": "hi", "parentResponseId": "p"}},
		{http.MethodPost, "/rest/rate-limits", map[string]string{"modelName": "fast"}},
		{http.MethodPost, "/rest/media/imagine/quota_info", map[string]any{}},
		{http.MethodPost, "/rest/models", map[string]string{"locale": "en"}},
		{http.MethodGet, "/rest/subscriptions", nil},
		{http.MethodPost, "/rest/app-chat/upload-file", map[string]string{"fileName": "a.txt", "content": "aGk="}},
	}
	for _, rt := range routes {
		for _, sso := range []string{"", "cookie-unknown"} {
			t.Run(rt.path+" "+sso, func(t *testing.T) {
				_, ts := startEmulator(t, grokweb.Config{})
				resp := call(t, ts, rt.method, rt.path, sso, rt.body)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status = %d; want 401", resp.StatusCode)
				}
				if msg := errorMessage(decodeJSON(t, resp)); !strings.Contains(msg, "invalid-credentials") {
					t.Errorf("message %q lacks invalid-credentials", msg)
				}
			})
		}
	}
}

func TestRequireSSORW(t *testing.T) {
	tests := []struct {
		name   string
		cookie string
		want   int
	}{
		{"both cookies", "sso=" + ssoA + "; sso-rw=" + ssoA, http.StatusOK},
		{"sso only", "sso=" + ssoA, http.StatusForbidden},
		{"different sso-rw", "sso=" + ssoA + "; sso-rw=" + ssoB, http.StatusForbidden},
		{"unknown sso", "sso=nobody; sso-rw=nobody", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ts := startEmulator(t, grokweb.Config{RequireSSORW: true})
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/rest/rate-limits", strings.NewReader(`{"modelName":"fast"}`))
			req.Header.Set("Cookie", tt.cookie)
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d; want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusForbidden {
				body := decodeJSON(t, resp)
				if errorCode(body) != 7 || errorMessage(body) != "Request rejected by anti-bot rules." {
					t.Errorf("body = %v; want the code 7 anti-bot rejection", body)
				}
			}
		})
	}
}

func TestSession(t *testing.T) {
	acct := grokweb.Account{SSO: ssoA, UserID: "3d1f0c7e-1111-4222-8333-944455556666", Email: "a@example.com"}
	tests := []struct {
		name       string
		sso        string
		fault      grokweb.Fault
		wantStatus int
		wantState  string
	}{
		{"valid", ssoA, grokweb.Fault{}, http.StatusOK, "authenticated"},
		{"unknown cookie", "cookie-unknown", grokweb.Fault{}, http.StatusOK, "unauthenticated"},
		{"no cookie", "", grokweb.Fault{}, http.StatusOK, "unauthenticated"},
		{"dead login", ssoA, grokweb.Fault{Kind: grokweb.FaultUnauthorized}, http.StatusOK, "unauthenticated"},
		{"blocked", ssoA, grokweb.Fault{Kind: grokweb.FaultBlocked}, http.StatusOK, "blocked"},
		{"counted fault", ssoA, grokweb.Fault{Kind: grokweb.FaultBlocked, Times: 1}, http.StatusOK, "authenticated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu, ts := startEmulator(t, grokweb.Config{Accounts: []grokweb.Account{acct}})
			emu.SetFault(ssoA, tt.fault)
			resp := call(t, ts, http.MethodGet, "/api/auth/session", tt.sso, nil)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d; want %d", resp.StatusCode, tt.wantStatus)
			}
			body := decodeJSON(t, resp)
			if body["status"] != tt.wantState {
				t.Errorf("status field = %v; want %q", body["status"], tt.wantState)
			}
			if tt.wantState != "authenticated" {
				return
			}
			session := body["session"].(map[string]any)
			if session["userId"] != acct.UserID || session["email"] != acct.Email {
				t.Errorf("session = %v; want the account's user id and email", session)
			}
		})
	}
}

func TestRemoveAccount(t *testing.T) {
	emu, ts := startEmulator(t, grokweb.Config{})
	emu.RemoveAccount(ssoA)
	if resp := call(t, ts, http.MethodPost, "/rest/rate-limits", ssoA, map[string]string{"modelName": "fast"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("rate-limits of a removed account = %d; want 401", resp.StatusCode)
	}
	if body := decodeJSON(t, call(t, ts, http.MethodGet, "/api/auth/session", ssoA, nil)); body["status"] != "unauthenticated" {
		t.Errorf("session of a removed account = %v; want unauthenticated", body["status"])
	}
	emu.AddAccount(grokweb.Account{SSO: ssoA})
	if body := decodeJSON(t, call(t, ts, http.MethodGet, "/api/auth/session", ssoA, nil)); body["status"] != "authenticated" {
		t.Errorf("session of a re-added account = %v; want authenticated", body["status"])
	}
}

func TestSubscriptionsAndModels(t *testing.T) {
	tests := []struct {
		tier        string
		wantSub     string
		wantModels  int
		wantMissing int
	}{
		{grokweb.TierBasic, "", 2, 3},
		{grokweb.TierSuper, "SUBSCRIPTION_TIER_GROK_PRO", 4, 1},
		{grokweb.TierHeavy, "SUBSCRIPTION_TIER_SUPER_GROK_PRO", 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.tier, func(t *testing.T) {
			_, ts := startEmulator(t, grokweb.Config{Accounts: []grokweb.Account{{SSO: ssoA, Tier: tt.tier}}})
			subs := decodeJSON(t, call(t, ts, http.MethodGet, "/rest/subscriptions", ssoA, nil))["subscriptions"].([]any)
			var got string
			if len(subs) > 0 {
				got = subs[0].(map[string]any)["tier"].(string)
			}
			if got != tt.wantSub {
				t.Errorf("subscription tier = %q; want %q", got, tt.wantSub)
			}
			models := decodeJSON(t, call(t, ts, http.MethodPost, "/rest/models", ssoA, map[string]string{"locale": "en"}))
			if n := len(models["models"].([]any)); n != tt.wantModels {
				t.Errorf("models = %d; want %d", n, tt.wantModels)
			}
			if n := len(models["unavailableModels"].([]any)); n != tt.wantMissing {
				t.Errorf("unavailableModels = %d; want %d", n, tt.wantMissing)
			}
		})
	}
}

func TestImageGeneration(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	frames := readFrames(t, call(t, ts, http.MethodPost, newPath, ssoA, newChat("fast", "Draw a red fox")))

	var progress []float64
	for _, f := range frames {
		card, ok := response(f)["cardAttachment"].(map[string]any)
		if !ok {
			continue
		}
		data := card["jsonData"].(string)
		if !strings.Contains(data, `"cardType":"generated_image_card"`) {
			t.Errorf("card %s is not a generated image card", data)
		}
		switch {
		case strings.Contains(data, `"progress":50`):
			progress = append(progress, 50)
		case strings.Contains(data, `"progress":100`):
			progress = append(progress, 100)
		}
	}
	if len(progress) != 4 {
		t.Errorf("image progress cards = %v; want 50 and 100 for each of 2 images", progress)
	}
	model := findResponse(frames, "modelResponse")["modelResponse"].(map[string]any)
	urls := model["generatedImageUrls"].([]any)
	if len(urls) != 2 {
		t.Fatalf("generatedImageUrls = %v; want 2", urls)
	}
	if !strings.Contains(model["message"].(string), `type="render_file"`) {
		t.Error("modelResponse.message lacks the render tag")
	}
	path := urls[0].(string)
	if !strings.HasPrefix(path, "users/") || !strings.HasSuffix(path, "/image.jpg") {
		t.Errorf("image path = %q; want users/<uid>/generated/<id>/image.jpg", path)
	}

	tests := []struct {
		name   string
		prefix string
		sso    string
		want   int
	}{
		{"assets prefix", "/assets/", ssoA, http.StatusOK},
		{"asset host form", "/", ssoA, http.StatusOK},
		{"no cookie", "/assets/", "", http.StatusForbidden},
		{"unknown cookie", "/assets/", "cookie-unknown", http.StatusForbidden},
		{"other account", "/assets/", ssoB, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := call(t, ts, http.MethodGet, tt.prefix+path, tt.sso, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d; want %d", resp.StatusCode, tt.want)
			}
			if tt.want != http.StatusOK {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "image/jpeg" {
				t.Errorf("Content-Type = %q; want image/jpeg", ct)
			}
			if _, err := jpeg.Decode(resp.Body); err != nil {
				t.Errorf("asset is not a JPEG: %v", err)
			}
		})
	}
}

func TestNoImagesWithoutRequest(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	frames := readFrames(t, call(t, ts, http.MethodPost, newPath, ssoA, newChat("fast", "Tell me a joke")))
	if findResponse(frames, "cardAttachment") != nil {
		t.Error("plain chat streamed an image card")
	}
}

func TestImagineImageFrames(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	body := map[string]any{"modelName": "imagine-image-edit", "message": "make it blue", "imageGenerationCount": 1}
	frames := readFrames(t, call(t, ts, http.MethodPost, newPath, ssoA, body))
	var seen []float64
	for _, f := range frames {
		if img, ok := response(f)["streamingImageGenerationResponse"].(map[string]any); ok {
			seen = append(seen, img["progress"].(float64))
		}
	}
	if len(seen) != 2 || seen[0] != 50 || seen[1] != 100 {
		t.Errorf("streamingImageGenerationResponse progress = %v; want [50 100]", seen)
	}
	model := findResponse(frames, "modelResponse")["modelResponse"].(map[string]any)
	if urls := model["generatedImageUrls"].([]any); len(urls) != 1 {
		t.Errorf("generatedImageUrls = %v; want 1", urls)
	}
}

func TestUploads(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	content := []byte("hello file")
	resp := call(t, ts, http.MethodPost, "/rest/app-chat/upload-file", ssoA, map[string]string{
		"fileName": "a.txt", "fileMimeType": "text/plain", "content": base64.StdEncoding.EncodeToString(content),
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("upload status = %d; want 200", resp.StatusCode)
	}
	legacy := decodeJSON(t, resp)
	id, uri := legacy["fileMetadataId"].(string), legacy["fileUri"].(string)
	if id == "" || !strings.HasSuffix(uri, "/"+id+"/content") {
		t.Fatalf("upload answer = %v; want fileMetadataId and users/<uid>/<id>/content", legacy)
	}

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	part, _ := mw.CreateFormFile("file", "b.png")
	part.Write([]byte("png bytes"))
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/http/upload-file-v2/direct", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Cookie", "sso="+ssoA)
	direct, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Body.Close()
	if direct.StatusCode != http.StatusOK {
		t.Fatalf("direct upload status = %d; want 200", direct.StatusCode)
	}
	v2 := decodeJSON(t, direct)
	meta := v2["fileMetadata"].(map[string]any)
	if v2["uploadId"] == "" || meta["fileMetadataId"] == "" || v2["terminalError"] != nil {
		t.Errorf("direct upload answer = %v; want uploadId, fileMetadata and null terminalError", v2)
	}

	chat := newChat("fast", "what is in the file?")
	chat["fileAttachments"] = []string{id, meta["fileMetadataId"].(string)}
	if resp := call(t, ts, http.MethodPost, newPath, ssoA, chat); resp.StatusCode != http.StatusOK {
		t.Errorf("chat with uploads status = %d; want 200", resp.StatusCode)
	}
	if resp := call(t, ts, http.MethodPost, newPath, ssoB, chat); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("chat with another account's uploads status = %d; want 400", resp.StatusCode)
	}

	got := call(t, ts, http.MethodGet, "/assets/"+uri, ssoA, nil)
	data, _ := io.ReadAll(got.Body)
	if got.StatusCode != http.StatusOK || !bytes.Equal(data, content) {
		t.Errorf("GET upload = %d %q; want 200 %q", got.StatusCode, data, content)
	}
	if ct := got.Header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("upload Content-Type = %q; want text/plain", ct)
	}
}

func TestRequestLog(t *testing.T) {
	var logs bytes.Buffer
	acct := grokweb.Account{SSO: ssoA, UserID: "0a0b0c0d-1111-4222-8333-944455556666"}
	emu, ts := startEmulator(t, grokweb.Config{
		Accounts: []grokweb.Account{acct},
		Log:      slog.New(slog.NewTextHandler(&logs, nil)),
	})
	req, _ := http.NewRequest(http.MethodPost, ts.URL+newPath+"?debug=1", strings.NewReader(`{"message":"secret prompt"}`))
	req.Header.Set("Cookie", "sso="+ssoA)
	req.Header.Set("x-xai-request-id", "req-123")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	call(t, ts, http.MethodGet, "/api/auth/session", "cookie-unknown", nil)

	got := emu.Requests()
	if len(got) != 2 {
		t.Fatalf("Requests() = %d entries; want 2", len(got))
	}
	first := got[0]
	if first.Method != http.MethodPost || first.Path != newPath || first.Account != acct.UserID {
		t.Errorf("first request = %s %s account %q; want POST %s account %q", first.Method, first.Path, first.Account, newPath, acct.UserID)
	}
	if first.RequestID != "req-123" || !strings.Contains(string(first.Body), "secret prompt") {
		t.Errorf("first request id %q body %q; want req-123 and the body", first.RequestID, first.Body)
	}
	if first.Time.IsZero() {
		t.Error("first request has no time")
	}
	if got[1].Account != "" {
		t.Errorf("unknown cookie recorded as account %q; want empty", got[1].Account)
	}

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log lines = %d; want one per request:\n%s", len(lines), logs.String())
	}
	if !strings.Contains(lines[0], "method=POST") || !strings.Contains(lines[0], "path="+newPath) {
		t.Errorf("log line %q lacks method and path", lines[0])
	}
	for _, leak := range []string{ssoA, "cookie-unknown", "secret prompt", "debug=1", "req-123"} {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("log contains %q", leak)
		}
	}
}

func TestUnknownRoute(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	resp := call(t, ts, http.MethodGet, "/rest/nothing-here", ssoA, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status = %d; want 404", resp.StatusCode)
	}
}

func TestUnknownTierPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New with an unknown tier did not panic")
		}
	}()
	grokweb.New(grokweb.Config{Accounts: []grokweb.Account{{SSO: ssoA, Tier: "platinum"}}})
}
