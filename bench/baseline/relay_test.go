package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/emulator/xai"
)

const testKey = "relay-test-key"

// newUpstream returns the xAI API emulator on loopback, 5 chunks per response.
func newUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(xai.New(xai.Config{Keys: []string{testKey}, Chunks: 5}))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, base string, stream bool) (int, string) {
	t.Helper()
	body := `{"model":"grok-4-fast-non-reasoning","messages":[{"role":"user","content":"hello relay"}],"stream":` +
		map[bool]string{true: "true", false: "false"}[stream] + `}`
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// streamText joins the delta contents of an event stream and reports
// whether it ended with [DONE].
func streamText(t *testing.T, body string) (string, bool) {
	t.Helper()
	var text strings.Builder
	done := false
	for _, line := range strings.Split(body, "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var c completion
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		if len(c.Choices) > 0 && c.Choices[0].Delta != nil {
			if s, ok := c.Choices[0].Delta.Content.(string); ok {
				text.WriteString(s)
			}
		}
	}
	return text.String(), done
}

func TestBaselinesMatchDirect(t *testing.T) {
	up := newUpstream(t)
	target, _ := url.Parse(up.URL)
	relaySrv := httptest.NewServer(&relay{upstream: up.URL, client: up.Client()})
	defer relaySrv.Close()
	proxySrv := httptest.NewServer(newProxy(target, up.Client().Transport))
	defer proxySrv.Close()

	status, direct := post(t, up.URL, false)
	if status != http.StatusOK {
		t.Fatalf("direct status %d: %s", status, direct)
	}
	var want completion
	json.Unmarshal([]byte(direct), &want)
	if len(want.Choices) != 1 || want.Choices[0].Message == nil || want.Choices[0].Message.Content == "" {
		t.Fatalf("direct response has no content: %s", direct)
	}
	wantText, _ := streamText(t, func() string { _, b := post(t, up.URL, true); return b }())

	for name, base := range map[string]string{"relay": relaySrv.URL, "proxy": proxySrv.URL} {
		status, body := post(t, base, false)
		var got completion
		if err := json.Unmarshal([]byte(body), &got); status != http.StatusOK || err != nil {
			t.Fatalf("%s: status %d, %v: %s", name, status, err, body)
		}
		if got.Choices[0].Message.Content != want.Choices[0].Message.Content || got.Usage == nil {
			t.Errorf("%s message = %+v; want content %q and usage", name, got.Choices[0].Message, want.Choices[0].Message.Content)
		}

		status, body = post(t, base, true)
		text, done := streamText(t, body)
		if status != http.StatusOK || !done || text != wantText {
			t.Errorf("%s stream: status %d, [DONE] %v, text %q; want 200, true, %q", name, status, done, text, wantText)
		}
	}
}

func TestRelayPassesUpstreamErrors(t *testing.T) {
	up := newUpstream(t)
	relaySrv := httptest.NewServer(&relay{upstream: up.URL, client: up.Client()})
	defer relaySrv.Close()
	req, _ := http.NewRequest(http.MethodPost, relaySrv.URL+"/v1/chat/completions",
		bytes.NewReader([]byte(`{"model":"grok-4-fast-non-reasoning","messages":[{"role":"user","content":"x"}]}`)))
	req.Header.Set("Authorization", "Bearer wrong-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status %d; want 401 from the upstream", resp.StatusCode)
	}
}
