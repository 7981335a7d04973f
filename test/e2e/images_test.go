package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/store"
)

// isImage reports whether b starts like a PNG, JPEG or WebP file.
func isImage(b []byte) bool {
	return bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) ||
		bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}) ||
		len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP"
}

func TestImagesBase64(t *testing.T) {
	g := startGateway(t, sqliteStore)
	c := g.client(userKey)
	res, err := c.Images.Generate(context.Background(), openai.ImageGenerateParams{
		Model: "grok-imagine", Prompt: "A red fox in the snow", N: openai.Int(2),
		ResponseFormat: openai.ImageGenerateParamsResponseFormatB64JSON,
	})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	if len(res.Data) != 2 {
		t.Fatalf("images: %d; want 2", len(res.Data))
	}
	for i, img := range res.Data {
		data, err := base64.StdEncoding.DecodeString(img.B64JSON)
		if err != nil || !isImage(data) {
			t.Errorf("image %d: %d bytes, %v; want PNG, JPEG or WebP", i, len(data), err)
		}
		if img.URL != "" {
			t.Errorf("image %d has a URL %q in b64_json mode", i, img.URL)
		}
	}
	// One chat asked for the images, with the drawing prompt.
	chats := g.upstreamChats(0)
	if len(chats) != 1 || !strings.Contains(chats[0].Message, "A red fox in the snow") {
		t.Errorf("upstream chats %+v; want one drawing chat", chats)
	}
	g.waitGenerations(1)
	rows, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{})
	if err != nil || len(rows) != 1 {
		t.Fatalf("generations: %d %v", len(rows), err)
	}
	if r := rows[0]; r.Model != "grok-imagine" || r.Provider != "grok" || r.SessionID == "" || r.Status != http.StatusOK {
		t.Errorf("generation row: model %q provider %q session %q status %d", r.Model, r.Provider, r.SessionID, r.Status)
	}
}

func TestImagesURLs(t *testing.T) {
	g := startGateway(t, sqliteStore)
	c := g.client(userKey)
	res, err := c.Images.Generate(context.Background(), openai.ImageGenerateParams{
		Prompt: "A lighthouse at night", N: openai.Int(3),
		ResponseFormat: openai.ImageGenerateParamsResponseFormatURL,
	})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	if len(res.Data) != 3 {
		t.Fatalf("images: %d; want 3", len(res.Data))
	}
	if n := len(g.upstreamChats(0)); n != 2 {
		t.Errorf("upstream chats: %d; want 2 for 3 images at 2 per chat", n)
	}
	seen := map[string]bool{}
	for i, img := range res.Data {
		if !strings.HasPrefix(img.URL, g.URL+"/v1/images/files/") {
			t.Fatalf("image %d URL %q is not on the gateway %s", i, img.URL, g.URL)
		}
		if strings.Contains(img.URL, "users/") || strings.Contains(img.URL, g.EmuURL) {
			t.Errorf("image %d URL %q exposes the upstream asset path", i, img.URL)
		}
		seen[img.URL] = true
		// A plain GET with no credentials returns the image.
		resp, err := http.Get(img.URL)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") || !isImage(body.Bytes()) {
			t.Errorf("GET image %d: %d %q, %d bytes; want an image", i, resp.StatusCode, resp.Header.Get("Content-Type"), body.Len())
		}
	}
	if len(seen) != 3 {
		t.Errorf("distinct URLs: %d; want 3", len(seen))
	}

	t.Run("forged token", func(t *testing.T) {
		u := res.Data[0].URL
		i := len(g.URL+"/v1/images/files/") + 20
		flipped := byte('A')
		if u[i] == 'A' {
			flipped = 'B'
		}
		forged := u[:i] + string(flipped) + u[i+1:]
		r := g.do(http.MethodGet, strings.TrimPrefix(forged, g.URL), "", nil)
		if r.Status != http.StatusForbidden || r.json(t)["error"] == nil {
			t.Errorf("forged link: %d %s; want a 403 OpenAI error", r.Status, r.Body)
		}
		r = g.do(http.MethodGet, "/v1/images/files/not-a-token", "", nil)
		if r.Status != http.StatusForbidden {
			t.Errorf("garbage link: %d; want 403", r.Status)
		}
	})
	g.waitGenerations(1)
}

func TestImageLinkExpires(t *testing.T) {
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) { c.ImageURLTTL = time.Second }))
	c := g.client(userKey)
	res, err := c.Images.Generate(context.Background(), openai.ImageGenerateParams{Prompt: "A boat"})
	if err != nil || len(res.Data) != 1 {
		t.Fatalf("generate: %v", err)
	}
	path := strings.TrimPrefix(res.Data[0].URL, g.URL)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := g.do(http.MethodGet, path, "", nil)
		if r.Status == http.StatusNotFound {
			if r.json(t)["error"] == nil {
				t.Errorf("expired link body %s; want an OpenAI error", r.Body)
			}
			return
		}
		if r.Status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("link answered %d %s; want 200 until it expires, then 404", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestImagesRejectsBadParameters(t *testing.T) {
	g := startGateway(t, sqliteStore)
	tests := []struct {
		name  string
		body  map[string]any
		param string
	}{
		{"too many images", map[string]any{"prompt": "a cat", "n": 5}, "n"},
		{"zero images", map[string]any{"prompt": "a cat", "n": 0}, "n"},
		{"size", map[string]any{"prompt": "a cat", "size": "512x512"}, "size"},
		{"response format", map[string]any{"prompt": "a cat", "response_format": "png"}, "response_format"},
		{"no prompt", map[string]any{"model": "grok-imagine"}, "prompt"},
		{"chat model", map[string]any{"model": "grok-3", "prompt": "a cat"}, "model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.do(http.MethodPost, "/v1/images/generations", userKey, tt.body)
			e, _ := r.json(t)["error"].(map[string]any)
			if r.Status != http.StatusBadRequest || e["param"] != tt.param {
				t.Errorf("got %d %s; want 400 with param %q", r.Status, r.Body, tt.param)
			}
		})
	}
	if n := len(g.upstreamChats(0)); n != 0 {
		t.Errorf("rejected requests reached the upstream %d times", n)
	}
	r := g.do(http.MethodPost, "/v1/images/generations", "", map[string]any{"prompt": "a cat"})
	if r.Status != http.StatusUnauthorized {
		t.Errorf("generation without a key: %d; want 401", r.Status)
	}
}

func TestChatRejectsImageModelAndTools(t *testing.T) {
	g := startGateway(t, sqliteStore)
	c := g.client(userKey)
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "grok-imagine", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	assertAPIError(t, err, http.StatusBadRequest, "", "model")

	r := g.do(http.MethodPost, "/v1/chat/completions", userKey, map[string]any{
		"model": "grok-4-heavy", "messages": []map[string]any{{"role": "user", "content": "weather?"}},
		"tools": []map[string]any{{"type": "function", "function": map[string]any{"name": "weather", "parameters": map[string]any{"type": "object"}}}},
	})
	e, _ := r.json(t)["error"].(map[string]any)
	if r.Status != http.StatusBadRequest || e["param"] != "tools" || !strings.Contains(e["message"].(string), "xai") {
		t.Errorf("tools on Grok web: %d %s; want 400 on tools naming the xai provider", r.Status, r.Body)
	}
	if n := len(g.upstreamChats(0)); n != 0 {
		t.Errorf("rejected requests reached the upstream %d times", n)
	}
}

func TestChatRefusesImageURLsOfPrivateHosts(t *testing.T) {
	var hits atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer target.Close()
	g := startGateway(t, sqliteStore)

	urls := []string{
		target.URL + "/cat.png",
		"http://localhost/cat.png",
		"http://[::1]:8080/cat.png",
		"http://10.0.0.7/cat.png",
		"http://192.168.1.20/cat.png",
		"http://169.254.169.254/latest/meta-data",
		"https://172.16.5.4/cat.png",
	}
	for _, u := range urls {
		r := g.do(http.MethodPost, "/v1/chat/completions", userKey, map[string]any{
			"model": "grok-3",
			"messages": []map[string]any{{"role": "user", "content": []map[string]any{
				{"type": "text", "text": "What is this?"},
				{"type": "image_url", "image_url": map[string]any{"url": u}},
			}}},
		})
		e, _ := r.json(t)["error"].(map[string]any)
		if r.Status != http.StatusBadRequest || e["param"] != "messages[0].content[1].image_url.url" {
			t.Errorf("image URL %s: %d %s; want 400 on the image_url", u, r.Status, r.Body)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the gateway fetched the loopback image server %d times", n)
	}
	if n := len(g.upstreamChats(0)); n != 0 {
		t.Errorf("refused requests reached the upstream %d times", n)
	}

	// A data URL is attached and reaches the upstream as an upload.
	png := "data:image/png;base64," + base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n0000"))
	r := g.do(http.MethodPost, "/v1/chat/completions", userKey, map[string]any{
		"model": "grok-3",
		"messages": []map[string]any{{"role": "user", "content": []map[string]any{
			{"type": "text", "text": "What is this?"},
			{"type": "image_url", "image_url": map[string]any{"url": png}},
		}}},
	})
	if r.Status != http.StatusOK {
		t.Fatalf("data URL image: %d %s", r.Status, r.Body)
	}
	uploads := 0
	for _, req := range g.Emu.Requests() {
		if strings.Contains(req.Path, "upload-file") {
			uploads++
		}
	}
	if uploads != 1 {
		t.Errorf("uploads: %d; want 1", uploads)
	}
}

// TestImagesFromXAI checks both response formats when only an xai session
// can draw: links point at the gateway and return the upstream's bytes.
func TestImagesFromXAI(t *testing.T) {
	m := startMixedGateway(t, sqliteStore, false, xaiKeyA)
	c := m.client(userKey)
	res, err := c.Images.Generate(context.Background(), openai.ImageGenerateParams{
		Prompt: "A ferry in fog", N: openai.Int(2),
		ResponseFormat: openai.ImageGenerateParamsResponseFormatURL,
	})
	if err != nil {
		t.Fatalf("generate urls: %v", err)
	}
	if len(res.Data) != 2 {
		t.Fatalf("images: %d; want 2", len(res.Data))
	}
	for i, img := range res.Data {
		if !strings.HasPrefix(img.URL, m.URL+"/v1/images/files/") {
			t.Fatalf("image %d URL %q is not on the gateway", i, img.URL)
		}
		resp, err := http.Get(img.URL)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" || !isImage(body.Bytes()) {
			t.Errorf("GET image %d: %d %q, %d bytes; want a PNG", i, resp.StatusCode, resp.Header.Get("Content-Type"), body.Len())
		}
	}

	b64, err := c.Images.Generate(context.Background(), openai.ImageGenerateParams{
		Prompt: "A ferry at dawn", ResponseFormat: openai.ImageGenerateParamsResponseFormatB64JSON,
	})
	if err != nil {
		t.Fatalf("generate b64: %v", err)
	}
	raw, err := base64.StdEncoding.DecodeString(b64.Data[0].B64JSON)
	if err != nil || !isImage(raw) {
		t.Errorf("b64_json does not decode to an image: %v", err)
	}
	if m.grokChats() != 0 {
		t.Errorf("Grok web received %d chats; want 0 with no grok session", m.grokChats())
	}
	m.waitGenerations(2)
}

// TestImageLinksKeepForwardedScheme checks that links keep the https
// scheme a trusted TLS-terminating proxy reports, and only from it.
func TestImageLinksKeepForwardedScheme(t *testing.T) {
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}))
	body := map[string]any{"prompt": "A harbour crane", "response_format": "url"}
	res := g.do(http.MethodPost, "/v1/images/generations", userKey, body, "X-Forwarded-Proto", "https")
	if res.Status != http.StatusOK {
		t.Fatalf("generate: %d %s", res.Status, res.Body)
	}
	host := strings.TrimPrefix(g.URL, "http://")
	if !strings.Contains(string(res.Body), `"url":"https://`+host+`/v1/images/files/`) {
		t.Errorf("link does not use the forwarded scheme: %s", res.Body)
	}

	plain := startGateway(t, sqliteStore)
	res = plain.do(http.MethodPost, "/v1/images/generations", userKey, body, "X-Forwarded-Proto", "https")
	if res.Status != http.StatusOK || !strings.Contains(string(res.Body), `"url":"http://`) {
		t.Errorf("an untrusted peer changed the link scheme: %d %s", res.Status, res.Body)
	}
}
