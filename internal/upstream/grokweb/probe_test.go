package grokweb

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

func TestInferTier(t *testing.T) {
	q := func(total int) upstream.ProbeQuota { return upstream.ProbeQuota{Total: total} }
	tests := []struct {
		name  string
		quota map[string]upstream.ProbeQuota
		want  string
	}{
		{"basic", map[string]upstream.ProbeQuota{"fast": q(30), "auto": q(20)}, TierBasic},
		{"super", map[string]upstream.ProbeQuota{"fast": q(140), "auto": q(50), "expert": q(50)}, TierSuper},
		{"heavy", map[string]upstream.ProbeQuota{"fast": q(400), "auto": q(150), "heavy": q(20)}, TierHeavy},
		{"lowest signal wins", map[string]upstream.ProbeQuota{"fast": q(400), "auto": q(50)}, TierSuper},
		{"unknown totals", map[string]upstream.ProbeQuota{"fast": q(12345)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inferTier(tt.quota); got != tt.want {
				t.Errorf("inferTier = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestProbeSkipsDeniedModes(t *testing.T) {
	var paths []string
	h := func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.URL.Path == "/api/auth/session":
			io.WriteString(w, `{"status":"authenticated","session":{"userId":"user-1"}}`)
		case strings.Contains(string(body), `"heavy"`):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(403)
			io.WriteString(w, `{"error":{"code":3,"message":"mode not available"}}`)
		default:
			io.WriteString(w, `{"windowSizeSeconds":7200,"remainingQueries":137,"totalQueries":140}`)
		}
	}
	c, _ := newTestClient(t, http.HandlerFunc(h))
	p, err := c.Probe(testContext(t), testCred())
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if p.AccountID != "user-1" {
		t.Errorf("account id = %q; want user-1", p.AccountID)
	}
	if _, ok := p.Quota["heavy"]; ok {
		t.Error("quota lists the denied heavy mode")
	}
	if got := p.Quota["fast"]; got != (upstream.ProbeQuota{Remaining: 137, Total: 140, Window: 2 * time.Hour}) {
		t.Errorf("fast quota = %+v", got)
	}
	for _, path := range paths {
		if strings.Contains(path, "conversations") {
			t.Errorf("probe called the chat endpoint %q", path)
		}
	}
}

func TestProbeAntiBotFails(t *testing.T) {
	c, _ := newTestClient(t, serveStatus(403, "application/json",
		`{"error":{"code":7,"message":"Request rejected by anti-bot rules."}}`))
	_, err := c.Probe(testContext(t), testCred())
	if ue := upstreamError(t, err); ue.Outcome != upstream.OutcomeEgressRejected {
		t.Errorf("outcome = %q; want egress_rejected", ue.Outcome)
	}
}

func TestFetchAssetSendsCookie(t *testing.T) {
	var cookie, path string
	c, srv := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cookie, path = r.Header.Get("Cookie"), r.URL.Path
		w.Header().Set("Content-Type", "image/jpeg")
		io.WriteString(w, "jpeg-bytes")
	}))
	for _, p := range []string{"users/u/generated/a/image.jpg", srv.URL + "/users/u/generated/a/image.jpg"} {
		body, ct, err := c.FetchAsset(testContext(t), testCred(), p)
		if err != nil {
			t.Fatalf("FetchAsset(%q): %v", p, err)
		}
		data, _ := io.ReadAll(body)
		body.Close()
		if string(data) != "jpeg-bytes" || ct != "image/jpeg" {
			t.Errorf("FetchAsset(%q) = %q %q; want the image", p, data, ct)
		}
		if path != "/users/u/generated/a/image.jpg" {
			t.Errorf("server path = %q", path)
		}
		if !strings.Contains(cookie, "sso="+testSSO) {
			t.Errorf("asset request cookie = %q; want the sso cookie", cookie)
		}
	}
}

func TestFetchAssetRejectsOtherHosts(t *testing.T) {
	c := New(Config{BaseURL: "http://127.0.0.1:9"})
	for _, p := range []string{"http://example.test/x.jpg", "https://127.0.0.1:9/x.jpg", "../../etc/passwd", ""} {
		_, _, err := c.FetchAsset(testContext(t), testCred(), p)
		if ue := upstreamError(t, err); ue.Outcome != upstream.OutcomeRejectedRequest {
			t.Errorf("FetchAsset(%q) outcome = %q; want rejected_request", p, ue.Outcome)
		}
	}
}

func TestComputedStatsigLayout(t *testing.T) {
	key := make([]byte, statsigKeyBytes)
	for i := range key {
		key[i] = byte(i)
	}
	now := time.Unix(statsigEpoch+1000, 0)
	s := newSigner(StatsigComputed, base64.StdEncoding.EncodeToString(key))
	raw, err := base64.RawStdEncoding.DecodeString(s.sign("POST", "/rest/app-chat/conversations/new", now))
	if err != nil || len(raw) != 70 {
		t.Fatalf("signature decodes to %d bytes (err %v); want 70", len(raw), err)
	}
	mask := raw[0]
	for i := 1; i < len(raw); i++ {
		raw[i] ^= mask
	}
	if string(raw[1:49]) != string(key) {
		t.Error("signature does not carry the verification key after the mask byte")
	}
	if secs := uint32(raw[49]) | uint32(raw[50])<<8 | uint32(raw[51])<<16 | uint32(raw[52])<<24; secs != 1000 {
		t.Errorf("timestamp = %d; want 1000", secs)
	}
	if raw[69] != 3 {
		t.Errorf("last byte = %d; want 3", raw[69])
	}
}

func TestStatsigModes(t *testing.T) {
	now := time.Now()
	if got := newSigner(StatsigFixed, "captured").sign("POST", "/p", now); got != "captured" {
		t.Errorf("fixed = %q; want captured", got)
	}
	if got := newSigner(StatsigNone, "").sign("POST", "/p", now); got != "" {
		t.Errorf("none = %q; want empty", got)
	}
	text, err := base64.StdEncoding.DecodeString(newSigner(StatsigFallback, "").sign("POST", "/p", now))
	if err != nil || !strings.HasPrefix(string(text), "x1:TypeError: ") {
		t.Errorf("fallback decodes to %q (err %v); want an x1: TypeError text", text, err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{BaseURL: "grok.com"},
		{Selector: "model"},
		{StatsigMode: "random"},
		{StatsigMode: StatsigFixed},
		{StatsigMode: StatsigComputed, StatsigValue: "c2hvcnQ="},
	}
	for _, cfg := range bad {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil; want an error", cfg)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("Validate(zero) = %v; want nil", err)
	}
}
