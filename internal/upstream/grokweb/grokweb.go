// Package grokweb is the upstream client for the Grok web app: chat over
// the cookie-authenticated REST endpoints (newline-delimited JSON) or the
// WebSocket gateway, plus quota probes and asset downloads.
//
// The protocol is undocumented and drifts every few months. The parts that
// drift are settings (base URL, chat transport, model selector style,
// x-statsig-id strategy, user agent, TLS fingerprint), and both transports
// feed the same frames to one event mapping. docs/grok-web-settings.md
// lists the settings and the period each default matches.
package grokweb

import (
	"crypto/x509"
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

// DefaultUserAgent is the desktop Chrome user agent sent with Go's own TLS
// stack. It must match the one that earned any cf_clearance cookie sent
// with it. With a Chrome TLS profile the default is that profile's
// Chrome version instead.
const DefaultUserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 " +
	"(KHTML, like Gecko) Chrome/146.0.0.0 Safari/537.36"

// Chat transports, the values of Config.Transport.
const (
	// TransportREST posts chats to the REST endpoints and reads NDJSON.
	TransportREST = "rest"
	// TransportWS sends chats over the WebSocket gateway /ws/mgw/.
	TransportWS = "ws"
	// TransportAuto uses the WebSocket gateway and falls back to REST for
	// a session whose upgrade is refused, remembering that for
	// Config.FallbackTTL.
	TransportAuto = "auto"
)

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
	// (default), StatsigFixed, StatsigSigner, StatsigFallback or
	// StatsigNone.
	StatsigMode string
	// StatsigValue is the header value for StatsigFixed, and for
	// StatsigComputed the base64 of the page's 48-byte verification key.
	// With StatsigComputed and no valid key a random key is used.
	StatsigValue string
	// StatsigSignerURL is the http(s) URL of the service that StatsigSigner
	// requests each signature from.
	StatsigSignerURL string
	// UserAgent is sent on every request. Default: DefaultUserAgent with
	// the Go TLS stack, else the Chrome version of TLSProfile.
	UserAgent string
	// ClientHints replaces the Sec-Ch-Ua header derived from UserAgent.
	// Empty derives it.
	ClientHints string
	// Transport is TransportREST (default), TransportWS or TransportAuto.
	Transport string
	// FallbackTTL is how long TransportAuto keeps a session on REST after
	// its WebSocket upgrade was refused. Default 30 minutes.
	FallbackTTL time.Duration
	// HeartbeatInterval is the period of the WebSocket ping event.
	// Default 25s, as the web app sends it.
	HeartbeatInterval time.Duration
	// TLSProfile is TLSProfileGo (default), TLSProfileChrome or a
	// versioned Chrome profile such as "chrome_131". It applies when
	// HTTPClient is nil.
	TLSProfile string
	// RootCAs replaces the system roots when HTTPClient is nil. Tests
	// set it to trust a loopback server.
	RootCAs *x509.CertPool
	// ProxyURL is the outbound proxy (http, https or socks5 URL) of
	// sessions that have none of their own. Empty means a direct
	// connection.
	ProxyURL string
	// HTTPClient sends every request. Its Timeout must be zero or longer
	// than any answer. Default: a client on TLSProfile whose transport
	// waits at most 90s for response headers. A session with its own
	// proxy gets a copy of this client's *http.Transport with that proxy
	// set.
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
	case StatsigSigner:
		if _, err := parseOrigin(c.StatsigSignerURL); err != nil {
			return fmt.Errorf("statsig signer URL: %w", err)
		}
	case StatsigFallback, StatsigNone:
	default:
		return fmt.Errorf("statsig mode %q is not computed, fixed, signer, fallback or none", c.StatsigMode)
	}
	switch c.Transport {
	case "", TransportREST, TransportWS, TransportAuto:
	default:
		return fmt.Errorf("grok chat transport %q is not rest, ws or auto", c.Transport)
	}
	if c.ProxyURL != "" {
		if err := checkProxyURL(c.ProxyURL); err != nil {
			return fmt.Errorf("grok proxy URL: %w", err)
		}
	}
	return checkProfileUserAgent(c.TLSProfile, c.UserAgent)
}

// checkProxyURL accepts http, https, socks5 and socks5h proxy URLs.
func checkProxyURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("proxy URL does not parse")
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
		return nil
	}
	return fmt.Errorf("proxy scheme %q is not http, https, socks5 or socks5h", u.Scheme)
}

// Client calls the Grok web app. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	assets    *url.URL
	selector  string
	signer    signer
	userAgent string
	hints     string
	http      *http.Client // nil when egress clients are built per route
	now       func() time.Time
	mode      string // chat transport
	fallback  time.Duration
	heartbeat time.Duration
	egressOpt egressOptions // profile and roots of built clients
	proxy     string        // default outbound proxy

	mu       sync.Mutex         // guards the fields below
	routes   map[string]*egress // by proxy URL ("" for direct)
	restOnly map[string]time.Time
}

// egress is the pair of clients of one outbound route: one for REST
// calls and one for WebSocket upgrades, which browsers send over
// HTTP/1.1.
type egress struct {
	rest *http.Client
	ws   *http.Client
}

var _ upstream.Client = (*Client)(nil)

// New returns a client for cfg. It assumes cfg passed Validate: a base
// URL that does not parse falls back to https://grok.com, an unknown TLS
// profile to Go's stack.
func New(cfg Config) *Client {
	c := &Client{
		selector:  cfg.Selector,
		userAgent: cfg.UserAgent,
		hints:     cfg.ClientHints,
		http:      cfg.HTTPClient,
		now:       cfg.Now,
		mode:      cfg.Transport,
		fallback:  cfg.FallbackTTL,
		heartbeat: cfg.HeartbeatInterval,
		proxy:     cfg.ProxyURL,
		routes:    make(map[string]*egress),
		restOnly:  make(map[string]time.Time),
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
	profile, _ := profileName(cfg.TLSProfile)
	c.egressOpt = egressOptions{profile: profile, rootCAs: cfg.RootCAs}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
		if profile != "" && c.http == nil {
			c.userAgent = chromeUserAgent(profileMajor(profile))
		}
	}
	if c.mode == "" {
		c.mode = TransportREST
	}
	if c.fallback <= 0 {
		c.fallback = 30 * time.Minute
	}
	if c.heartbeat <= 0 {
		c.heartbeat = 25 * time.Second
	}
	if c.now == nil {
		c.now = time.Now
	}
	mode := cfg.StatsigMode
	if mode == "" {
		mode = StatsigComputed
	}
	c.signer = newSigner(mode, cfg.StatsigValue)
	if mode == StatsigSigner {
		// The signer is a service of the operator, reached directly.
		sc, _ := newGoClient(egressOptions{rootCAs: cfg.RootCAs})
		c.signer.ext = &remoteSigner{url: cfg.StatsigSignerURL, metaContent: cfg.StatsigValue,
			http: sc, cache: make(map[string]signed)}
	}
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

// httpClient returns the REST client of a session's outbound route.
func (c *Client) httpClient(cred upstream.Credential) (*http.Client, error) {
	e, err := c.route(cred)
	if err != nil {
		return nil, err
	}
	return e.rest, nil
}

// route returns the clients of a session's outbound route: its own proxy,
// else the default proxy, else a direct connection. A session's cookies,
// cf_clearance included, only ever travel over this route, so the
// clearance stays with the egress that earned it.
func (c *Client) route(cred upstream.Credential) (*egress, error) {
	proxy := cred.ProxyURL.Reveal()
	if proxy == "" {
		proxy = c.proxy
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.routes[proxy]; ok {
		return e, nil
	}
	if proxy != "" {
		if err := checkProxyURL(proxy); err != nil {
			return nil, fmt.Errorf("session %w", err)
		}
	}
	e, err := c.newEgress(proxy)
	if err != nil {
		return nil, err
	}
	c.routes[proxy] = e
	return e, nil
}

func (c *Client) newEgress(proxy string) (*egress, error) {
	if c.http != nil {
		hc, err := c.withProxy(proxy)
		if err != nil {
			return nil, err
		}
		return &egress{rest: hc, ws: hc}, nil
	}
	o := c.egressOpt
	o.proxy = proxy
	build := newGoClient
	if o.profile != "" {
		build = newFingerprintClient
	}
	rest, err := build(o)
	if err != nil {
		return nil, err
	}
	o.forceHTTP = true
	ws, err := build(o)
	if err != nil {
		return nil, err
	}
	return &egress{rest: rest, ws: ws}, nil
}

// withProxy returns the configured client, or a copy of it that goes
// through proxy.
func (c *Client) withProxy(proxy string) (*http.Client, error) {
	if proxy == "" {
		return c.http, nil
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
	if m := chromeMajor.FindStringSubmatch(c.userAgent); m != nil || c.hints != "" {
		hints := c.hints
		if hints == "" {
			hints = fmt.Sprintf(`"Chromium";v="%s", "Not-A.Brand";v="24", "Google Chrome";v="%s"`, m[1], m[1])
		}
		h.Set("Sec-Ch-Ua", hints)
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
