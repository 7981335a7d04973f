// Command baseline serves the two floors the gateway is measured against,
// in front of the same upstream as the gateway:
//
//   - proxy: a bare net/http/httputil.ReverseProxy. It reads the whole
//     request body before forwarding, since forwarding a body that is
//     still arriving cuts some streams.
//
//   - relay: a plain net/http relay that decodes the OpenAI chat request,
//     re-encodes it, and decodes and re-encodes every response object or
//     server-sent chunk, with no other work. It is the least a gateway that
//     reads requests must spend.
//
//     baseline -mode relay -listen 127.0.0.1:9201 -upstream http://127.0.0.1:9100
//
// Both pass the Authorization header through unchanged. Everything listens
// on loopback only.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	_ "net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	mode := flag.String("mode", "relay", "what to serve: proxy (httputil.ReverseProxy) or relay (JSON decode and re-encode)")
	listen := flag.String("listen", "127.0.0.1:9201", "loopback host:port to listen on")
	upstream := flag.String("upstream", "http://127.0.0.1:9100", "origin of the upstream, without /v1")
	idlePerHost := flag.Int("max-idle-per-host", 1024, "idle keep-alive connections kept to the upstream")
	h2c := flag.Bool("h2c", false, "speak HTTP/2 without TLS to the upstream, as the gateway does with XAI_HTTP2_CLEARTEXT")
	debug := flag.String("debug", "", "loopback host:port for pprof, to profile the baseline beside the gateway (empty: none)")
	flag.Parse()
	if *debug != "" {
		go func() {
			err := http.ListenAndServe(*debug, http.DefaultServeMux)
			fmt.Fprintln(os.Stderr, "baseline: debug listener:", err)
		}()
	}
	if err := run(*mode, *listen, *upstream, *idlePerHost, *h2c); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(mode, listen, upstream string, idlePerHost int, h2c bool) error {
	target, err := url.Parse(upstream)
	if err != nil || target.Host == "" {
		return fmt.Errorf("invalid -upstream %q", upstream)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = idlePerHost
	t.MaxIdleConnsPerHost = idlePerHost
	if h2c {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}

	var h http.Handler
	switch mode {
	case "proxy":
		h = newProxy(target, t)
	case "relay":
		h = &relay{upstream: target.String(), client: &http.Client{Transport: t}}
	default:
		return fmt.Errorf("invalid -mode %q: use proxy or relay", mode)
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	fmt.Printf("listening on http://%s (%s)\n", ln.Addr(), mode)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newProxy returns a reverse proxy that buffers the request body, then
// forwards it and flushes each write of the response at once.
func newProxy(target *url.URL, t http.RoundTripper) http.Handler {
	p := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
		},
		Transport:     t,
		FlushInterval: -1,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			http.Error(w, "read request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		p.ServeHTTP(w, r)
	})
}

// maxBodyBytes bounds a request body, as the gateway's MAX_BODY_BYTES does.
const maxBodyBytes = 10 << 20
