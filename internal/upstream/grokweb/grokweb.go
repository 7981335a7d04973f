// Package grokweb is the upstream client for the Grok web app: chat over
// the cookie-authenticated REST endpoints, whose responses stream back as
// newline-delimited JSON, plus quota probes and asset downloads.
//
// The protocol is undocumented and drifts every few months. The parts that
// drift are settings (base URL, model selector style, x-statsig-id
// strategy) and the chat transport sits behind a small interface, so a
// WebSocket transport can replace REST without touching the event mapping.
package grokweb

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Model selector styles, the values of Config.Selector.
const (
	// SelectorModelName sends "modelName" alone (early 2025).
	SelectorModelName = "modelName"
	// SelectorModelMode sends "modelName" and a "modelMode" enum
	// (mid-2025 to early 2026).
	SelectorModelMode = "modelName+modelMode"
	// SelectorModeID sends a "modeId" string such as "fast" (since about
	// March 2026).
	SelectorModeID = "modeId"
)

// DefaultUserAgent is a desktop Chrome user agent. It must match the one
// that earned any cf_clearance cookie sent with it.
const DefaultUserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 " +
	"(KHTML, like Gecko) Chrome/146.0.0.0 Safari/537.36"

// Config sets up a Client. The zero value of every field has a default.
type Config struct {
	// BaseURL is the origin of the web app, e.g. http://127.0.0.1:9000.
	// REST and WebSocket paths hang off it. Default https://grok.com.
	BaseURL string
	// AssetsURL is the origin of generated media and uploaded files.
	// Default: BaseURL with "assets." before its host name, or BaseURL
	// itself when its host is an IP address or localhost.
	AssetsURL string
	// Selector is how a chat names its model: SelectorModeID (default),
	// SelectorModelMode or SelectorModelName.
	Selector string
	// StatsigMode chooses the x-statsig-id header: StatsigComputed
	// (default), StatsigFixed, StatsigFallback or StatsigNone.
	StatsigMode string
	// StatsigValue is the header value for StatsigFixed, and for
	// StatsigComputed the base64 of the page's 48-byte verification key.
	// With StatsigComputed and no valid key a random key is used.
	StatsigValue string
	// UserAgent is sent on every request. Default DefaultUserAgent.
	UserAgent string
	// HTTPClient sends every request. Its Timeout must be zero or longer
	// than any answer. Default: a client whose transport waits at most
	// 90s for response headers. A session with its own proxy gets a copy
	// of this client's *http.Transport with that proxy set.
	HTTPClient *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate reports settings that New would not accept as given.
func (c Config) Validate() error {
	if c.BaseURL != "" {
		if _, err := parseOrigin(c.BaseURL); err != nil {
			return fmt.Errorf("grok base URL: %w", err)
		}
	}
	if c.AssetsURL != "" {
		if _, err := parseOrigin(c.AssetsURL); err != nil {
			return fmt.Errorf("grok assets URL: %w", err)
		}
	}
	switch c.Selector {
	case "", SelectorModeID, SelectorModelMode, SelectorModelName:
	default:
		return fmt.Errorf("grok model selector %q is not modeId, modelName+modelMode or modelName", c.Selector)
	}
	switch c.StatsigMode {
	case "", StatsigComputed:
		if c.StatsigValue != "" {
			if _, err := decodeStatsigKey(c.StatsigValue); err != nil {
				return err
			}
		}
	case StatsigFixed:
		if c.StatsigValue == "" {
			return fmt.Errorf("statsig mode fixed needs a statsig value")
		}
	case StatsigFallback, StatsigNone:
	default:
		return fmt.Errorf("statsig mode %q is not computed, fixed, fallback or none", c.StatsigMode)
	}
	return nil
}

// Client calls the Grok web app. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	assets    *url.URL
	selector  string
	signer    signer
	userAgent string
	http      *http.Client
	now       func() time.Time
	transport chatTransport

	mu      sync.Mutex              // guards proxied
	proxied map[string]*http.Client // per outbound proxy URL
}

var _ upstream.Client = (*Client)(nil)

// New returns a client for cfg. It assumes cfg passed Validate: a base
// URL that does not parse falls back to https://grok.com.
func New(cfg Config) *Client {
	c := &Client{
		selector:  cfg.Selector,
		userAgent: cfg.UserAgent,
		http:      cfg.HTTPClient,
		now:       cfg.Now,
		proxied:   make(map[string]*http.Client),
	}
	var err error
	if c.base, err = parseOrigin(cfg.BaseURL); err != nil || cfg.BaseURL == "" {
		c.base, _ = url.Parse("https://grok.com")
	}
	if c.assets, err = parseOrigin(cfg.AssetsURL); err != nil || cfg.AssetsURL == "" {
		c.assets = deriveAssets(c.base)
	}
	if c.selector == "" {
		c.selector = SelectorModeID
	}
	mode := cfg.StatsigMode
	if mode == "" {
		mode = StatsigComputed
	}
	c.signer = newSigner(mode, cfg.StatsigValue)
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	if c.http == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = 90 * time.Second
		c.http = &http.Client{Transport: t}
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.transport = restTransport{c: c}
	return c
}

func parseOrigin(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http or https origin", raw)
	}
	return u, nil
}

// deriveAssets returns the asset origin for base: assets.grok.com for
// grok.com, and base itself for loopback and IP hosts, which have no
// subdomains.
func deriveAssets(base *url.URL) *url.URL {
	host := base.Hostname()
	if host == "localhost" || net.ParseIP(host) != nil {
		return base
	}
	u := *base
	u.Host = "assets." + base.Host
	return &u
}

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
		return nil, fmt.Errorf("session proxy URL does not parse")
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

// chromeMajor finds the Chrome major version in a user agent.
var chromeMajor = regexp.MustCompile(`Chrome/(\d+)`)

// setBrowserHeaders sets what a desktop Chrome sends on the web app's
// fetch calls: user agent, client hints derived from it, origin, referer
// and fetch metadata.
//
// NOTE: Accept-Encoding is left to net/http, which then decodes gzip. The
// browser also offers br and zstd, which net/http cannot decode.
func (c *Client) setBrowserHeaders(h http.Header, referer string) {
	h.Set("User-Agent", c.userAgent)
	h.Set("Accept", "*/*")
	h.Set("Accept-Language", "en-US,en;q=0.9")
	h.Set("Origin", c.base.String())
	h.Set("Referer", referer)
	h.Set("Sec-Fetch-Dest", "empty")
	h.Set("Sec-Fetch-Mode", "cors")
	h.Set("Sec-Fetch-Site", "same-origin")
	h.Set("Priority", "u=1, i")
	h.Set("Cache-Control", "no-cache")
	h.Set("Pragma", "no-cache")
	if m := chromeMajor.FindStringSubmatch(c.userAgent); m != nil {
		h.Set("Sec-Ch-Ua", fmt.Sprintf(`"Chromium";v="%s", "Not-A.Brand";v="24", "Google Chrome";v="%s"`, m[1], m[1]))
		h.Set("Sec-Ch-Ua-Mobile", "?0")
		h.Set("Sec-Ch-Ua-Platform", uaPlatform(c.userAgent))
	}
}

func uaPlatform(ua string) string {
	switch {
	case strings.Contains(ua, "Windows"):
		return `"Windows"`
	case strings.Contains(ua, "Mac OS X"):
		return `"macOS"`
	}
	return `"Linux"`
}

// setAPIHeaders sets the headers of a REST JSON call: browser headers,
// the session cookie, a fresh request id and the x-statsig-id signature
// for method and path.
func (c *Client) setAPIHeaders(h http.Header, ck Cookie, cred upstream.Credential, method, path string) {
	c.setBrowserHeaders(h, c.base.String()+"/")
	h.Set("Content-Type", "application/json")
	h.Set("Cookie", ck.Header(cred.AccountID))
	h.Set("x-xai-request-id", uuid.NewString())
	if v := c.signer.sign(method, path, c.now()); v != "" {
		h.Set("x-statsig-id", v)
	}
}

// endpoint returns the absolute URL of a REST path.
func (c *Client) endpoint(path string) string { return c.base.String() + path }

// session parses the credential's cookie and lists the secrets that must
// not reach an error message.
func session(cred upstream.Credential) (Cookie, scrubber, error) {
	sc := scrubber{cred.ProxyURL.Reveal()}
	if u, err := url.Parse(cred.ProxyURL.Reveal()); err == nil && u.User != nil {
		pass, _ := u.User.Password()
		sc = append(sc, u.User.String(), pass)
	}
	ck, err := ParseCookie(cred.Secret.Reveal())
	if err != nil {
		return Cookie{}, sc, &upstream.Error{
			Outcome: upstream.OutcomeUnauthorized,
			Message: "session credential has no sso cookie",
			Err:     err,
		}
	}
	return ck, append(sc, ck.secrets()...), nil
}
