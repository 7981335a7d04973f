package grokweb_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

const (
	ssoA = "cookie-alpha"
	ssoB = "cookie-bravo"
)

// fakeClock is a settable clock for quota windows.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startEmulator serves a new emulator over loopback HTTP. With no accounts
// in cfg it adds ssoA and ssoB on the unlimited tier.
func startEmulator(t *testing.T, cfg grokweb.Config) (*grokweb.Server, *httptest.Server) {
	t.Helper()
	if len(cfg.Accounts) == 0 {
		cfg.Accounts = []grokweb.Account{{SSO: ssoA}, {SSO: ssoB}}
	}
	emu := grokweb.New(cfg)
	ts := httptest.NewServer(emu)
	t.Cleanup(ts.Close)
	return emu, ts
}

// call sends a request with the given sso cookie (none when empty) and a
// JSON body (none when nil).
func call(t *testing.T, ts *httptest.Server, method, path, sso string, body any) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sso != "" {
		req.Header.Set("Cookie", "sso="+sso+"; sso-rw="+sso)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// decodeJSON reads resp's body as one JSON object.
func decodeJSON(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("decode %s body: %v", resp.Request.URL.Path, err)
	}
	return v
}

// readFrames reads an NDJSON stream to its end. Each line must be a JSON
// object.
func readFrames(t *testing.T, resp *http.Response) []map[string]any {
	t.Helper()
	frames, err := scanFrames(resp.Body)
	if err != nil {
		t.Fatalf("read stream: %v", err)
	}
	return frames
}

func scanFrames(r io.Reader) ([]map[string]any, error) {
	var frames []map[string]any
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var f map[string]any
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return frames, err
		}
		frames = append(frames, f)
	}
	return frames, sc.Err()
}

// newChat is a 2026-style chat body.
func newChat(mode, message string) map[string]any {
	return map[string]any{
		"temporary":             true,
		"modeId":                mode,
		"message":               message,
		"fileAttachments":       []string{},
		"imageAttachments":      []string{},
		"enableImageGeneration": true,
		"imageGenerationCount":  2,
		"sendFinalMetadata":     true,
		"disableTextFollowUps":  false,
	}
}

// response returns result.response of a frame, or nil.
func response(f map[string]any) map[string]any {
	res, _ := f["result"].(map[string]any)
	resp, _ := res["response"].(map[string]any)
	return resp
}

// resultKey returns the single member name of a frame's result.
func resultKey(f map[string]any) string {
	res, _ := f["result"].(map[string]any)
	for k := range res {
		return k
	}
	if _, ok := f["error"]; ok {
		return "error"
	}
	return ""
}

// answerTokens returns the answer token texts of a stream, in order.
func answerTokens(frames []map[string]any) []string {
	var out []string
	for _, f := range frames {
		r := response(f)
		tok, ok := r["token"].(string)
		if !ok || r["isThinking"] == true || r["isSoftStop"] == true || r["messageTag"] != "final" {
			continue
		}
		if strings.HasPrefix(tok, "<grok:render") {
			continue
		}
		out = append(out, tok)
	}
	return out
}

// findResponse returns the first result.response holding key.
func findResponse(frames []map[string]any, key string) map[string]any {
	for _, f := range frames {
		if r := response(f); r != nil {
			if _, ok := r[key]; ok {
				return r
			}
		}
	}
	return nil
}

// errorCode returns error.code of a JSON error body.
func errorCode(body map[string]any) float64 {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(float64)
	return code
}

func errorMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}
