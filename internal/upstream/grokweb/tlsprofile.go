package grokweb

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	fhttp "github.com/bogdanfinn/fhttp"
	tlsclient "github.com/bogdanfinn/tls-client"
	"github.com/bogdanfinn/tls-client/profiles"
	"golang.org/x/net/proxy"
)

// TLS profiles, the values of Config.TLSProfile.
const (
	// TLSProfileGo uses Go's own TLS stack and HTTP/2 client. Its
	// handshake does not look like a browser's.
	TLSProfileGo = "go"
	// TLSProfileChrome sends the ClientHello and HTTP/2 settings of the
	// newest desktop Chrome that the fingerprinting client knows
	// (Chrome 133 as of this writing).
	TLSProfileChrome = "chrome"
)

// chromeProfiles are the Chrome fingerprints that Config.TLSProfile may
// name as "chrome_<major>". "chrome" is the newest of them.
var chromeProfiles = map[string]profiles.ClientProfile{
	"chrome_133": profiles.Chrome_133,
	"chrome_131": profiles.Chrome_131,
	"chrome_124": profiles.Chrome_124,
	"chrome_120": profiles.Chrome_120,
	"chrome_117": profiles.Chrome_117,
}

const newestChrome = "chrome_133"

// chromeUserAgent is the desktop Chrome user agent of a major version.
func chromeUserAgent(major string) string {
	return "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 " +
		"(KHTML, like Gecko) Chrome/" + major + ".0.0.0 Safari/537.36"
}

// profileName returns the canonical name of a TLS profile setting ("" for
// the Go stack) and whether it is known.
func profileName(p string) (string, bool) {
	p = strings.ToLower(strings.TrimSpace(p))
	switch p {
	case "", TLSProfileGo:
		return "", true
	case TLSProfileChrome:
		return newestChrome, true
	}
	_, ok := chromeProfiles[p]
	return p, ok
}

// profileMajor is the Chrome major version of a canonical profile name,
// or "" for the Go stack.
func profileMajor(name string) string {
	return strings.TrimPrefix(name, "chrome_")
}

var chromeMajorOnly = regexp.MustCompile(`^\d+$`)

// checkProfileUserAgent reports a user agent whose Chrome version differs
// from the TLS profile: Cloudflare compares the two.
func checkProfileUserAgent(profile, ua string) error {
	name, ok := profileName(profile)
	if !ok {
		return fmt.Errorf("grok TLS profile %q is not go, chrome or one of chrome_133, chrome_131, chrome_124, chrome_120, chrome_117", profile)
	}
	if name == "" || ua == "" {
		return nil
	}
	m := chromeMajor.FindStringSubmatch(ua)
	if want := profileMajor(name); m == nil || !chromeMajorOnly.MatchString(want) || m[1] != want {
		return fmt.Errorf("grok user agent must be Chrome %s to match TLS profile %s", want, name)
	}
	return nil
}

// egressOptions are the settings of one outbound route.
type egressOptions struct {
	profile   string // canonical profile name; "" for Go's stack
	proxy     string // proxy URL; "" for a direct connection
	rootCAs   *x509.CertPool
	forceHTTP bool // HTTP/1.1 only, as browsers dial WebSockets
}

// newFingerprintClient returns an *http.Client whose requests go through
// the fingerprinting client with a browser's ClientHello, ALPN and HTTP/2
// settings. It never follows redirects and has no overall timeout, because
// answers stream for minutes and a timeout would also wrap the body of a
// WebSocket upgrade. The caller's context bounds each request.
func newFingerprintClient(o egressOptions) (*http.Client, error) {
	opts := []tlsclient.HttpClientOption{
		tlsclient.WithClientProfile(chromeProfiles[o.profile]),
		tlsclient.WithTimeoutSeconds(0),
		tlsclient.WithNotFollowRedirects(),
		tlsclient.WithDisableHttp3(),
	}
	if o.proxy != "" {
		// The client's own proxy dialer turns a zero timeout into an
		// instant deadline, so proxies are dialed here.
		opts = append(opts, tlsclient.WithProxyUrl(o.proxy),
			tlsclient.WithProxyDialerFactory(proxyDialer))
	}
	if o.rootCAs != nil {
		idle := 90 * time.Second
		opts = append(opts, tlsclient.WithTransportOptions(&tlsclient.TransportOptions{
			RootCAs: o.rootCAs, IdleConnTimeout: &idle,
		}))
	}
	if o.forceHTTP {
		opts = append(opts, tlsclient.WithForceHttp1())
	}
	c, err := tlsclient.NewHttpClient(tlsclient.NewNoopLogger(), opts...)
	if err != nil {
		return nil, fmt.Errorf("build %s TLS client: %w", o.profile, err)
	}
	return &http.Client{
		Transport: fingerprintTransport{c: c},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// newGoClient returns a client on Go's own TLS stack, through the proxy
// when one is given (http, https or socks5 URLs).
func newGoClient(o egressOptions) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 90 * time.Second
	// Go's default keeps 2 idle connections per host, so concurrent
	// requests to the one upstream host would each dial anew.
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 1024, 512
	if o.proxy != "" {
		u, err := url.Parse(o.proxy)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("proxy URL does not parse")
		}
		t.Proxy = http.ProxyURL(u)
	}
	if o.rootCAs != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: o.rootCAs}
	}
	if o.forceHTTP {
		t.ForceAttemptHTTP2 = false
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: t}, nil
}

// fingerprintTransport adapts the fingerprinting client, which has its
// own copy of net/http's types, to an http.RoundTripper.
type fingerprintTransport struct{ c tlsclient.HttpClient }

// chromeHeaderOrder is the order in which Chrome writes the headers this
// client sets. Header names not listed follow in any order.
var chromeHeaderOrder = []string{
	"host", "connection", "content-length", "pragma", "cache-control",
	"sec-ch-ua-platform", "x-xai-request-id", "sec-ch-ua", "sec-ch-ua-mobile",
	"baggage", "x-statsig-id", "user-agent", "accept", "content-type",
	"origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "referer",
	"accept-encoding", "accept-language", "cookie", "priority",
	"upgrade", "sec-websocket-version", "sec-websocket-key", "sec-websocket-extensions",
}

func (t fingerprintTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	fr, err := fhttp.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), r.Body)
	if err != nil {
		return nil, err
	}
	fr.Header = fhttp.Header(r.Header.Clone())
	fr.Header[fhttp.HeaderOrderKey] = chromeHeaderOrder
	fr.ContentLength = r.ContentLength
	if r.Host != "" {
		fr.Host = r.Host
	}
	resp, err := t.c.Do(fr)
	if err != nil {
		return nil, err
	}
	return &http.Response{
		Status:        resp.Status,
		StatusCode:    resp.StatusCode,
		Proto:         resp.Proto,
		ProtoMajor:    resp.ProtoMajor,
		ProtoMinor:    resp.ProtoMinor,
		Header:        http.Header(resp.Header),
		Body:          resp.Body,
		ContentLength: resp.ContentLength,
		Uncompressed:  resp.Uncompressed,
		Request:       r,
	}, nil
}

// proxyDialTimeout bounds the connection to a proxy and its handshake.
const proxyDialTimeout = 30 * time.Second

// proxyDialer opens tunnels through an http(s) proxy with CONNECT, or a
// socks5 proxy. The fingerprinting client then runs its own TLS handshake
// inside the tunnel.
func proxyDialer(raw string, _ time.Duration, _ *net.TCPAddr, _ fhttp.Header, _ tlsclient.Logger) (proxy.ContextDialer, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("proxy URL does not parse")
	}
	direct := &net.Dialer{Timeout: proxyDialTimeout}
	switch u.Scheme {
	case "socks5", "socks5h":
		d, err := proxy.FromURL(u, direct)
		if err != nil {
			return nil, fmt.Errorf("socks5 proxy: %w", err)
		}
		cd, ok := d.(proxy.ContextDialer)
		if !ok {
			return nil, fmt.Errorf("socks5 dialer cannot take a context")
		}
		return cd, nil
	case "http", "https":
		return connectDialer{proxy: u, direct: direct}, nil
	}
	return nil, fmt.Errorf("proxy scheme %q is not http, https, socks5 or socks5h", u.Scheme)
}

// connectDialer tunnels through an HTTP proxy with the CONNECT method.
type connectDialer struct {
	proxy  *url.URL
	direct *net.Dialer
}

func (d connectDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := d.direct.DialContext(ctx, "tcp", d.proxy.Host)
	if err != nil {
		return nil, err
	}
	if d.proxy.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: d.proxy.Hostname()})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	conn.SetDeadline(time.Now().Add(proxyDialTimeout))
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if u := d.proxy.User; u != nil {
		pass, _ := u.Password()
		auth := base64.StdEncoding.EncodeToString([]byte(u.Username() + ":" + pass))
		req.Header.Set("Proxy-Authorization", "Basic "+auth)
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("proxy responded to CONNECT with status %d", resp.StatusCode)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}
