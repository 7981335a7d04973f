package grokweb_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bogdanfinn/tls-client/profiles"
	utls "github.com/bogdanfinn/utls"

	emulator "github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/upstream"
	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
)

// hello is what a server learns from one ClientHello.
type hello struct {
	ciphers    []uint16
	extensions []uint16
	alpn       []string
}

// helloRecorder keeps the ClientHellos a TLS server receives.
type helloRecorder struct {
	mu     sync.Mutex
	hellos []hello
}

func (r *helloRecorder) record(chi *tls.ClientHelloInfo) (*tls.Config, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hellos = append(r.hellos, hello{
		ciphers:    withoutGREASE(chi.CipherSuites),
		extensions: withoutGREASE(chi.Extensions),
		alpn:       slices.Clone(chi.SupportedProtos),
	})
	return nil, nil
}

func (r *helloRecorder) all() []hello {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.hellos)
}

// withoutGREASE drops the reserved values (0x?A?A) that browsers put in
// random places of a ClientHello.
func withoutGREASE(ids []uint16) []uint16 {
	var out []uint16
	for _, id := range ids {
		if id&0x0f0f == 0x0a0a && id>>8 == id&0xff {
			continue
		}
		out = append(out, id)
	}
	return out
}

func sorted(ids []uint16) []uint16 {
	s := slices.Clone(ids)
	slices.Sort(s)
	return s
}

// startTLSEmulator serves the emulator over TLS with HTTP/2, recording
// every ClientHello and the protocol of every request.
func startTLSEmulator(t *testing.T) (*emulator.Server, *httptest.Server, *helloRecorder, *[]int) {
	t.Helper()
	emu := emulator.New(emulator.Config{
		Accounts: []emulator.Account{{SSO: emuSSO, Tier: emulator.TierSuper}}, Chunks: 5, RequireSSORW: true,
	})
	rec := &helloRecorder{}
	var mu sync.Mutex
	protos := []int{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.ProtoMajor)
		mu.Unlock()
		emu.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{GetConfigForClient: rec.record}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return emu, srv, rec, &protos
}

func roots(srv *httptest.Server) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return pool
}

func chatOnce(t *testing.T, c *grokweb.Client) {
	t.Helper()
	s, err := c.Chat(ctx(t), emuCred(), userChatReq("hello over TLS"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	events, err := readAll(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if texts(events, upstream.EventText) == "" {
		t.Fatal("answer has no text")
	}
}

func TestChromeProfileClientHello(t *testing.T) {
	emu, srv, rec, protos := startTLSEmulator(t)

	goClient := grokweb.New(grokweb.Config{BaseURL: srv.URL, RootCAs: roots(srv), TLSProfile: grokweb.TLSProfileGo})
	chatOnce(t, goClient)
	chrome := grokweb.New(grokweb.Config{BaseURL: srv.URL, RootCAs: roots(srv), TLSProfile: grokweb.TLSProfileChrome})
	chatOnce(t, chrome)

	hellos := rec.all()
	if len(hellos) != 2 {
		t.Fatalf("server saw %d handshakes; want one per client", len(hellos))
	}
	goHello, chromeHello := hellos[0], hellos[1]

	spec, err := profiles.Chrome_133.GetClientHelloSpec()
	if err != nil {
		t.Fatalf("profile spec: %v", err)
	}
	if want := withoutGREASE(spec.CipherSuites); !slices.Equal(chromeHello.ciphers, want) {
		t.Errorf("chrome cipher suites = %x; want the profile's %x", chromeHello.ciphers, want)
	}
	if slices.Equal(chromeHello.ciphers, goHello.ciphers) {
		t.Errorf("chrome cipher suites equal Go's default %x", goHello.ciphers)
	}
	if slices.Equal(sorted(chromeHello.extensions), sorted(goHello.extensions)) {
		t.Errorf("chrome extensions equal Go's default set %x", goHello.extensions)
	}
	// Chrome shuffles its extensions on every handshake, so the profile
	// fixes their set, not their order.
	if want := specExtensions(spec.Extensions); !slices.Equal(sorted(chromeHello.extensions), want) {
		t.Errorf("chrome extensions = %v; want the profile's set %v", sorted(chromeHello.extensions), want)
	}
	if !slices.Equal(chromeHello.alpn, []string{"h2", "http/1.1"}) {
		t.Errorf("chrome ALPN = %q; want h2, http/1.1", chromeHello.alpn)
	}
	if got := emu.Requests()[len(emu.Requests())-1].Header.Get("User-Agent"); !strings.Contains(got, "Chrome/133.") {
		t.Errorf("user agent with the chrome profile = %q; want Chrome 133", got)
	}
	if p := *protos; p[len(p)-1] != 2 {
		t.Errorf("chrome chat went over HTTP/%d; want HTTP/2", p[len(p)-1])
	}
}

// specExtensions returns the sorted extension ids of a profile. Each
// extension writes its id first. GREASE is left out, and so is
// server_name (id 0), which is not sent to an IP address such as the
// loopback server's.
func specExtensions(exts []utls.TLSExtension) []uint16 {
	var ids []uint16
	for _, e := range exts {
		buf := make([]byte, e.Len())
		if len(buf) < 2 {
			continue
		}
		e.Read(buf)
		if id := uint16(buf[0])<<8 | uint16(buf[1]); id != 0 {
			ids = append(ids, id)
		}
	}
	return sorted(withoutGREASE(ids))
}

func TestChromeProfileGatewayOverHTTP1(t *testing.T) {
	emu, srv, rec, _ := startTLSEmulator(t)
	c := grokweb.New(grokweb.Config{BaseURL: srv.URL, RootCAs: roots(srv), TLSProfile: grokweb.TLSProfileChrome,
		Transport: grokweb.TransportWS})
	chatOnce(t, c)

	gw := emu.GatewaySessions()
	if len(gw) != 1 || !gw[0].Completed {
		t.Fatalf("gateway sessions = %+v; want one completed", gw)
	}
	var wsHello *hello
	for _, h := range rec.all() {
		if slices.Equal(h.alpn, []string{"http/1.1"}) {
			wsHello = &h
		}
	}
	if wsHello == nil {
		t.Fatalf("no handshake offered http/1.1 alone; hellos %+v", rec.all())
	}
	spec, _ := profiles.Chrome_133.GetClientHelloSpec()
	if !slices.Equal(wsHello.ciphers, withoutGREASE(spec.CipherSuites)) {
		t.Errorf("gateway handshake cipher suites = %x; want the profile's", wsHello.ciphers)
	}
}
