package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/store"
)

// TestHostileInput sends malformed and oversized requests over real HTTP
// and checks each OpenAI error: status, type, code and param.
func TestHostileInput(t *testing.T) {
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) {
		c.MaxBodyBytes = 4096
		c.MaxMessages = 4
		c.MaxPromptBytes = 2048
		c.MaxHeaderBytes = 8192
		c.MaxHeaderCount = 30
	}))
	msgs := func(n int, text string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `{"role":"user","content":"` + text + `"}`
		}
		return `{"model":"grok-3","messages":[` + strings.Join(parts, ",") + `]}`
	}
	withField := func(field string) string {
		return `{"model":"grok-3","messages":[{"role":"user","content":"hi"}],` + field + `}`
	}
	manyHeaders := make([]string, 0, 80)
	for i := range 40 {
		manyHeaders = append(manyHeaders, fmt.Sprintf("X-Filler-%d", i), "1")
	}
	cases := []struct {
		name   string
		body   io.Reader
		header []string
		status int
		typ    string
		code   string
		param  string
	}{
		{"body over the cap", strings.NewReader(msgs(1, strings.Repeat("a", 5000))), nil,
			413, "invalid_request_error", "request_too_large", ""},
		{"chunked body over the cap", io.MultiReader(strings.NewReader(msgs(1, strings.Repeat("a", 5000)))), nil,
			413, "invalid_request_error", "request_too_large", ""},
		{"too many messages", strings.NewReader(msgs(5, "x")), nil, 400, "invalid_request_error", "too_many_messages", "messages"},
		{"prompt over the cap", strings.NewReader(msgs(2, strings.Repeat("b", 1100))), nil,
			400, "invalid_request_error", "context_length_exceeded", "messages"},
		{"nested too deep", strings.NewReader(withField(`"metadata":` + strings.Repeat("[", 70) + strings.Repeat("]", 70))), nil,
			400, "invalid_request_error", "invalid_json", ""},
		{"invalid utf-8", strings.NewReader("{\"model\":\"grok-3\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}"), nil,
			400, "invalid_request_error", "invalid_encoding", ""},
		{"unknown content part", strings.NewReader(`{"model":"grok-3","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}`), nil,
			400, "invalid_request_error", "invalid_value", "messages[0].content[0].type"},
		{"wrong field type", strings.NewReader(withField(`"max_tokens":"many"`)), nil,
			400, "invalid_request_error", "invalid_type", "max_tokens"},
		{"temperature out of range", strings.NewReader(withField(`"temperature":9`)), nil,
			400, "invalid_request_error", "invalid_value", "temperature"},
		{"top_p out of range", strings.NewReader(withField(`"top_p":-1`)), nil,
			400, "invalid_request_error", "invalid_value", "top_p"},
		{"max_tokens out of range", strings.NewReader(withField(`"max_tokens":0`)), nil,
			400, "invalid_request_error", "invalid_value", "max_tokens"},
		{"max_tokens overflows", strings.NewReader(withField(`"max_tokens":99999999999999999999999`)), nil,
			400, "invalid_request_error", "invalid_type", "max_tokens"},
		{"too many headers", strings.NewReader(msgs(1, "x")), manyHeaders,
			431, "invalid_request_error", "too_many_headers", ""},
		{"headers over the cap", strings.NewReader(msgs(1, "x")), []string{"X-Filler", strings.Repeat("h", 9000)},
			431, "invalid_request_error", "headers_too_large", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, g.URL+"/v1/chat/completions", c.body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+userKey)
			req.Header.Set("Content-Type", "application/json")
			for i := 0; i+1 < len(c.header); i += 2 {
				req.Header.Set(c.header[i], c.header[i+1])
			}
			res := send(t, req)
			got := errorOf(t, res)
			want := [4]any{c.status, c.typ, c.code, c.param}
			if got != want {
				t.Errorf("got %v; want %v: %s", got, want, res.Body)
			}
		})
	}
}

// send does req and reads the whole response.
func send(t *testing.T, req *http.Request) response {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: body}
}

// errorOf returns status, type, code and param of an OpenAI error
// response. A null code or param reads as "".
func errorOf(t *testing.T, res response) [4]any {
	t.Helper()
	var body struct {
		Error struct {
			Type  string  `json:"type"`
			Code  *string `json:"code"`
			Param *string `json:"param"`
		} `json:"error"`
	}
	if err := json.Unmarshal(res.Body, &body); err != nil {
		t.Fatalf("status %d, body is not an OpenAI error: %s", res.Status, res.Body)
	}
	deref := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	return [4]any{res.Status, body.Error.Type, deref(body.Error.Code), deref(body.Error.Param)}
}

const chatHi = `{"model":"grok-3","messages":[{"role":"user","content":"hi"}]}`

// TestSlowlorisDoesNotStarve holds 300 connections that never finish their
// headers and checks that normal requests are served meanwhile, and that
// the server drops the stalled connections after READ_HEADER_TIMEOUT.
func TestSlowlorisDoesNotStarve(t *testing.T) {
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) {
		c.ReadHeaderTimeout = 2 * time.Second
	}))
	addr := strings.TrimPrefix(g.URL, "http://")
	conns := make([]net.Conn, 0, 300)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range 300 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("open slow connection %d: %v", len(conns), err)
		}
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nX-Slow: ", addr)
		conns = append(conns, c)
	}

	for i := range 10 {
		res := g.do(http.MethodPost, "/v1/chat/completions", userKey, chatHi)
		if res.Status != http.StatusOK {
			t.Fatalf("request %d beside slow connections: %d %s", i, res.Status, res.Body)
		}
	}

	// Every stalled connection is closed by the server within a generous
	// ceiling after its header deadline.
	deadline := time.Now().Add(15 * time.Second)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("slow connection %d still open: %v", i, err)
		}
	}
}

// TestSlowBodyIsCut sends headers promptly and then a body that never
// completes; the server must answer or close within READ_TIMEOUT.
func TestSlowBodyIsCut(t *testing.T) {
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) {
		c.ReadTimeout = time.Second
	}))
	addr := strings.TrimPrefix(g.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":", addr, userKey)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		res.Body.Close()
		if res.StatusCode < 400 {
			t.Fatalf("unfinished body answered %d; want an error status or a closed connection", res.StatusCode)
		}
		return
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("server kept the unfinished request open: %v", err)
	}
}

// TestStuckStreamReaderIsCut opens a stream and stops reading it. Once a
// write has blocked for STREAM_WRITE_TIMEOUT the gateway cuts the response,
// gives the session back and writes the request's audit record.
func TestStuckStreamReaderIsCut(t *testing.T) {
	g := startGateway(t, sqliteStore,
		withConfig(func(c *config.Config) { c.StreamWriteTimeout = time.Second }),
		withEmulator(func(e *grokweb.Config) { e.Chunks = 60_000 }))
	addr := strings.TrimPrefix(g.URL, "http://")

	// A tiny receive buffer makes the server's writes block soon.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"model":"grok-3","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", addr, userKey, len(body), body)
	head := make([]byte, 512)
	if _, err := io.ReadAtLeast(c, head, 64); err != nil {
		t.Fatalf("read stream start: %v", err)
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		t.Fatalf("stream start: %q", head)
	}

	// Stop reading: the session must come back and the record be written.
	g.waitGenerations(1)
	waitInFlightZero(t, g)
	rows, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Status < 400 {
		t.Fatalf("audit rows %+v; want one failed stream", rows)
	}
	res := g.do(http.MethodPost, "/v1/chat/completions", userKey, chatHi)
	if res.Status != http.StatusOK {
		t.Fatalf("request after the stuck stream: %d %s", res.Status, res.Body)
	}
}

// waitInFlightZero polls the admin API until no session has a request in
// flight.
func waitInFlightZero(t *testing.T, g *gateway) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res := g.admin(http.MethodGet, "/admin/sessions", nil)
		var l struct {
			Data []struct {
				InFlight int `json:"in_flight"`
			} `json:"data"`
		}
		if err := json.Unmarshal(res.Body, &l); err != nil {
			t.Fatalf("list sessions: %v: %s", err, res.Body)
		}
		busy := 0
		for _, s := range l.Data {
			busy += s.InFlight
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions still hold %d requests in flight", busy)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOverloadSheds caps in-flight requests and sends a burst several
// times larger. The excess must get 503 with Retry-After at once, health
// probes must keep returning 200, and every admitted request must be
// audited. Goroutines must return to their level before the burst.
func TestOverloadSheds(t *testing.T) {
	g := startGateway(t, sqliteStore,
		withConfig(func(c *config.Config) { c.MaxInFlight = 3 }),
		withEmulator(func(e *grokweb.Config) { e.TokenDelay = 20 * time.Millisecond }))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	post := func() response {
		req, _ := http.NewRequest(http.MethodPost, g.URL+"/v1/chat/completions", strings.NewReader(chatHi))
		req.Header.Set("Authorization", "Bearer "+userKey)
		res, err := client.Do(req)
		if err != nil {
			t.Errorf("burst request: %v", err)
			return response{}
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return response{Status: res.StatusCode, Header: res.Header, Body: b}
	}
	if res := post(); res.Status != http.StatusOK {
		t.Fatalf("warm-up: %d %s", res.Status, res.Body)
	}
	client.CloseIdleConnections()
	g.waitGenerations(1)
	baseline := settledGoroutines()
	baseHeap := settledHeap()

	var mu sync.Mutex
	var results []response
	var wg sync.WaitGroup
	for range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := post()
			mu.Lock()
			results = append(results, res)
			mu.Unlock()
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if res := g.do(http.MethodGet, "/livez", "", nil); res.Status != http.StatusOK {
		t.Errorf("/livez during the burst: %d %s", res.Status, res.Body)
	}
	wg.Wait()

	served, shed := 0, 0
	for _, res := range results {
		switch res.Status {
		case http.StatusOK:
			served++
		case http.StatusServiceUnavailable:
			shed++
			want := [4]any{503, "server_error", "server_overloaded", ""}
			if got := errorOf(t, res); got != want {
				t.Errorf("shed answer %v; want %v", got, want)
			}
			if res.Header.Get("Retry-After") != "1" {
				t.Errorf("shed answer Retry-After %q; want 1", res.Header.Get("Retry-After"))
			}
		default:
			t.Errorf("burst answer %d: %s", res.Status, res.Body)
		}
	}
	if served == 0 || shed == 0 {
		t.Fatalf("served %d and shed %d of %d; want some of each", served, shed, len(results))
	}
	g.waitGenerations(int64(1 + served))

	client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := settledGoroutines()
		if n <= baseline+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines after the burst: %d; before it: %d", n, baseline)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The heap returns close to where it was: a burst leaves no buffers
	// or records behind. The margin is generous because the test process
	// also holds the emulator's request log.
	const margin = 32 << 20
	for {
		h := settledHeap()
		if h <= baseHeap+margin {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heap in use after the burst: %d MiB; before it: %d MiB", h>>20, baseHeap>>20)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settledHeap returns the heap in use after a garbage collection.
func settledHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// settledGoroutines counts goroutines after letting finished ones exit.
func settledGoroutines() int {
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	return runtime.NumGoroutine()
}
