// Package xai is the upstream client for the official xAI API, whose chat
// endpoint follows OpenAI's chat completions format. A session is one API
// key. The client forwards the caller's request body with the upstream
// model id put in, so every field the API supports (tools, tool_choice,
// response_format, sampling settings) reaches it unchanged.
package xai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// DefaultBaseURL is the public xAI API.
const DefaultBaseURL = "https://api.x.ai/v1"

// Config sets up a Client. The zero value of every field has a default.
type Config struct {
	// BaseURL is the API base that /chat/completions and /models hang
	// off, e.g. http://127.0.0.1:9100/v1. Default DefaultBaseURL.
	BaseURL string
	// HTTPClient's Transport sends every request: the client itself is
	// not used, so no redirect is followed and its Timeout, Jar and
	// CheckRedirect do not apply. Default: a transport that waits at most
	// 90s for response headers. A session with its own proxy gets a copy
	// of this *http.Transport with that proxy set.
	HTTPClient *http.Client
	// Now is the clock for Retry-After dates. Default time.Now.
	Now func() time.Time
	// CleartextHTTP2 makes the default client speak HTTP/2 without TLS to
	// an http:// BaseURL (prior knowledge, no HTTP/1.1), so that many
	// streams share a few connections. https URLs use HTTP/2 through TLS
	// wherever the server offers it. It has no effect with HTTPClient set.
	CleartextHTTP2 bool
}

// Validate reports a base URL that New would not accept.
func (c Config) Validate() error {
	if c.BaseURL == "" {
		return nil
	}
	if _, err := parseBase(c.BaseURL); err != nil {
		return fmt.Errorf("xai base URL: %w", err)
	}
	return nil
}

// Client calls the xAI API. It is safe for concurrent use.
type Client struct {
	base string // without a trailing slash
	http *http.Client
	now  func() time.Time

	mu      sync.Mutex              // guards proxied
	proxied map[string]*http.Client // per outbound proxy URL
}

var _ upstream.Client = (*Client)(nil)

// New returns a client for cfg. A base URL that does not parse falls back
// to DefaultBaseURL; call Config.Validate first to report it.
func New(cfg Config) *Client {
	c := &Client{http: cfg.HTTPClient, now: cfg.Now, proxied: make(map[string]*http.Client)}
	base, err := parseBase(cfg.BaseURL)
	if err != nil || cfg.BaseURL == "" {
		base, _ = parseBase(DefaultBaseURL)
	}
	c.base = strings.TrimRight(base.String(), "/")
	if c.http == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = 90 * time.Second
		// Go's default keeps 2 idle connections per host, so concurrent
		// requests to the one upstream host would each dial anew.
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 1024, 512
		if cfg.CleartextHTTP2 {
			t.Protocols = new(http.Protocols)
			t.Protocols.SetHTTP2(true)
			t.Protocols.SetUnencryptedHTTP2(true)
		}
		c.http = &http.Client{Transport: t}
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

func parseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http or https URL", raw)
	}
	return u, nil
}

// Chat posts the request to /chat/completions. A streamed request
// requests usage in the last chunk. Errors before the response starts
// are *upstream.Error values.
func (c *Client) Chat(ctx context.Context, cred upstream.Credential, req upstream.ChatRequest) (upstream.Stream, error) {
	body, err := requestBody(req)
	if err != nil {
		return nil, &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Message: "the request body is not a JSON object", Err: err}
	}
	resp, err := c.send(ctx, cred, http.MethodPost, "/chat/completions", body)
	if err != nil {
		return nil, err
	}
	if !req.Stream {
		defer resp.Body.Close()
		return readCompletion(resp.Body)
	}
	return newSSEStream(ctx, resp.Body), nil
}

// Probe lists the models the key may use, which checks the key without
// spending tokens. The xAI API reports no quota, so Probe.Quota stays
// empty.
func (c *Client) Probe(ctx context.Context, cred upstream.Credential) (upstream.Probe, error) {
	resp, err := c.send(ctx, cred, http.MethodGet, "/models", nil)
	if err != nil {
		return upstream.Probe{}, err
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBodyBytes)).Decode(&list); err != nil {
		return upstream.Probe{}, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Status: resp.StatusCode,
			Message: "the model list is not valid JSON", Err: err}
	}
	return upstream.Probe{}, nil
}

// maxBodyBytes bounds a non-streamed response or a model list.
const maxBodyBytes = 16 << 20

// send makes one authenticated request and returns the response when its
// status is 200. Any other status, and any failure to get a response, is
// returned as a classified *upstream.Error.
func (c *Client) send(ctx context.Context, cred upstream.Credential, method, path string, body []byte) (*http.Response, error) {
	hc, err := c.httpClient(cred)
	if err != nil {
		return nil, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Message: err.Error()}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hreq, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Message: "build request", Err: err}
	}
	// Canonical names set directly, with one array for the values.
	vals := []string{"Bearer " + cred.Secret.Reveal(), "application/json, text/event-stream", "application/json"}
	hreq.Header["Authorization"] = vals[0:1:1]
	hreq.Header["Accept"] = vals[1:2:2]
	if body != nil {
		hreq.Header["Content-Type"] = vals[2:3:3]
	}

	// The transport, not the client: an API call is never redirected, and
	// http.Client.Do would copy the headers of every request in case it
	// was.
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	resp, err := rt.RoundTrip(hreq)
	if err != nil {
		return nil, transportError(ctx, err, newScrubber(cred))
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	return nil, classify(resp, head, c.now(), newScrubber(cred))
}

// transportError classifies a request that got no response. The client
// going away is canceled; anything else, timeouts included, is
// unavailable.
func transportError(ctx context.Context, err error, sc scrubber) *upstream.Error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return &upstream.Error{Outcome: upstream.OutcomeCanceled, Message: "client went away", Err: ctx.Err()}
	}
	// url.Error prints the request URL, which holds no secret here, but
	// a proxy error may print the proxy URL with its password.
	return &upstream.Error{Outcome: upstream.OutcomeUnavailable, Message: "no response from upstream",
		Err: scrubbedError{msg: sc.scrub(err.Error()), err: err}}
}

// scrubbedError is an error whose text had secrets removed. Unwrap keeps
// the cause for errors.Is checks such as context.DeadlineExceeded.
type scrubbedError struct {
	msg string
	err error
}

func (e scrubbedError) Error() string { return e.msg }
func (e scrubbedError) Unwrap() error { return e.err }

// httpClient returns the client for a session: the configured one, or a
// copy that goes through the session's own outbound proxy.
func (c *Client) httpClient(cred upstream.Credential) (*http.Client, error) {
	proxy := cred.ProxyURL.Reveal()
	if proxy == "" {
		return c.http, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if hc, ok := c.proxied[proxy]; ok {
		return hc, nil
	}
	u, err := url.Parse(proxy)
	if err != nil || u.Host == "" {
		return nil, errors.New("session proxy URL does not parse")
	}
	base, ok := c.http.Transport.(*http.Transport)
	if c.http.Transport == nil {
		base, ok = http.DefaultTransport.(*http.Transport), true
	}
	if !ok {
		return nil, fmt.Errorf("session proxies need an *http.Transport, have %T", c.http.Transport)
	}
	t := base.Clone()
	t.Proxy = http.ProxyURL(u)
	hc := *c.http
	hc.Transport = t
	c.proxied[proxy] = &hc
	return &hc, nil
}
