// Command xai-emulator serves the xAI API emulator on a loopback address,
// for demos and for tests that run the gateway as a separate process.
// Faults are scripted over POST /_emulator/faults.
//
//	xai-emulator -listen 127.0.0.1:9100 -keys key-a,key-b -token-delay 20ms
//
// Point the gateway at it with XAI_BASE_URL=http://127.0.0.1:9100/v1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/grokproxy/grokproxy/internal/emulator/xai"
)

// shutdownTimeout bounds how long open streams may run after a signal.
const shutdownTimeout = 10 * time.Second

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "xai-emulator:", err)
		os.Exit(1)
	}
}

// errUsage reports a flag error that the flag package has already printed.
var errUsage = errors.New("invalid flags")

// run serves until ctx ends or SIGINT or SIGTERM arrives.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xai-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9100", "address to listen on (host:port); the API is under /v1")
	keys := fs.String("keys", "", "comma-separated API keys to accept")
	tokenDelay := fs.Duration("token-delay", 0, "pause before each streamed chunk after the first, e.g. 20ms")
	chunks := fs.Int("chunks", 10, "answer text chunks per chat")
	quiet := fs.Bool("quiet", false, "log only start and stop, not one line per request (for benchmarks)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if *chunks <= 0 {
		return fmt.Errorf("invalid -chunks %d: must be positive", *chunks)
	}
	if *tokenDelay < 0 {
		return fmt.Errorf("invalid -token-delay %s: must not be negative", *tokenDelay)
	}
	var list []string
	for _, k := range strings.Split(*keys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			list = append(list, k)
		}
	}
	if len(list) == 0 {
		return errors.New("no keys: set -keys to one or more API keys")
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	reqLog := log
	if *quiet {
		reqLog = slog.New(slog.DiscardHandler)
	}
	emu := xai.New(xai.Config{Keys: list, TokenDelay: *tokenDelay, Chunks: *chunks, Log: reqLog})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %q: %w", *listen, err)
	}
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	// Besides HTTP/1.1 it accepts HTTP/2 without TLS (prior knowledge),
	// which XAI_HTTP2_CLEARTEXT makes the gateway speak.
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
	fmt.Fprintf(stdout, "listening on http://%s/v1\n", ln.Addr())
	log.Info("listening", "addr", ln.Addr().String(), "keys", len(list))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
