// Command grokweb-emulator serves the Grok web emulator on a loopback
// address, for demos and for tests that run the gateway as a separate
// process. Faults are scripted over POST /_emulator/faults.
//
//	grokweb-emulator -accounts cookie-a,cookie-b -tier super -token-delay 20ms
//
// With -token-delay 0 and -first-byte-delay 0 (the defaults) it responds
// without any pause. Benchmarks add -quiet to drop the per-request log.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

// shutdownTimeout bounds how long open streams may run after a signal.
const shutdownTimeout = 10 * time.Second

func main() {
	err := run(os.Args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		return
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "grokweb-emulator:", err)
		os.Exit(1)
	}
}

// errUsage reports a flag error that the flag package has already printed.
var errUsage = errors.New("invalid flags")

func run(args []string) error {
	fs := flag.NewFlagSet("grokweb-emulator", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on (host:port)")
	accounts := fs.String("accounts", "", "comma-separated sso cookie values of the accounts to accept")
	tier := fs.String("tier", grokweb.TierUnlimited, "tier of every account: basic, super, heavy or unlimited")
	tokenDelay := fs.Duration("token-delay", 0, "pause before each streamed token frame, e.g. 20ms")
	firstByteDelay := fs.Duration("first-byte-delay", 0, "pause before the first byte of every chat answer")
	chunks := fs.Int("chunks", 20, "answer token frames per chat")
	requireSSORW := fs.Bool("require-sso-rw", false, "reject requests whose sso-rw cookie is missing or differs from sso")
	refuseUpgrade := fs.Bool("refuse-upgrade", false, "answer WebSocket upgrades on /ws/mgw/ with 404 (the protocol before 2026-08)")
	refuseRESTChat := fs.Bool("refuse-rest-chat", false, "answer the REST chat routes with 404 (chat on the WebSocket gateway only)")
	quiet := fs.Bool("quiet", false, "log only start and stop, not one line per request (for benchmarks)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if !grokweb.ValidTier(*tier) {
		return fmt.Errorf("invalid -tier %q: use basic, super, heavy or unlimited", *tier)
	}
	if *chunks <= 0 {
		return fmt.Errorf("invalid -chunks %d: must be positive", *chunks)
	}

	var accts []grokweb.Account
	for _, sso := range strings.Split(*accounts, ",") {
		if sso = strings.TrimSpace(sso); sso != "" {
			accts = append(accts, grokweb.Account{SSO: sso, Tier: *tier})
		}
	}
	if len(accts) == 0 {
		return errors.New("no accounts: set -accounts to one or more sso cookie values")
	}

	if *tokenDelay < 0 || *firstByteDelay < 0 {
		return errors.New("invalid -token-delay or -first-byte-delay: must not be negative")
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	reqLog := log
	if *quiet {
		reqLog = slog.New(slog.DiscardHandler)
	}
	emu := grokweb.New(grokweb.Config{
		Accounts:       accts,
		TokenDelay:     *tokenDelay,
		FirstByteDelay: *firstByteDelay,
		Chunks:         *chunks,
		Log:            reqLog,
		RequireSSORW:   *requireSSORW,
		RefuseUpgrade:  *refuseUpgrade,
		RefuseRESTChat: *refuseRESTChat,
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %q: %w", *listen, err)
	}
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	log.Info("listening", "addr", ln.Addr().String(), "accounts", len(accts), "tier", *tier)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
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
