// Command grokproxy is an OpenAI-compatible gateway in front of a pool of
// Grok credentials.
//
// Usage:
//
//	grokproxy serve      run the gateway
//	grokproxy migrate    apply database migrations and exit
//	grokproxy keygen -o FILE
//	                     write a new encryption keyring to FILE (mode 0600)
//	grokproxy settings   list every setting with its default
//	grokproxy version    print the version
//
// Settings come from environment variables (see `grokproxy settings`) and
// an optional YAML file given with -config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"syscall"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/observe"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

const usageHead = `grokproxy: an OpenAI-compatible gateway for Grok

Usage:
  grokproxy serve [-config FILE]     run the gateway
  grokproxy migrate [-config FILE]   apply database migrations and exit
  grokproxy keygen -o FILE           write a new encryption keyring to FILE
  grokproxy settings                 list every setting with its default
  grokproxy version                  print the version
`

const usageTail = `
Settings are environment variables; run "grokproxy settings" for the list.
Run "grokproxy COMMAND -h" for the flags of a command.
`

func printUsage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  grokproxy %-24s %s\n", name+" …", commands[name].summary)
	}
	fmt.Fprint(w, usageTail)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	if c, ok := commands[cmd]; ok {
		err = c.run(rest, stdout, stderr)
		return exitCode(cmd, err, stderr)
	}
	switch cmd {
	case "serve":
		err = serve(rest, stderr)
	case "migrate":
		err = migrate(rest, stderr)
	case "keygen":
		err = keygen(rest, stdout, stderr)
	case "settings":
		printSettings(stdout)
	case "version":
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "-help", "--help":
		printUsage(stdout)
	default:
		fmt.Fprintf(stderr, "grokproxy: unknown command %q\n\n", cmd)
		printUsage(stderr)
		return 2
	}
	return exitCode(cmd, err, stderr)
}

// command is a subcommand registered by its own file, such as
// "grokproxy users".
type command struct {
	summary string // one line for the usage text
	run     func(args []string, stdout, stderr io.Writer) error
}

// commands holds the subcommands that files of this package register in
// their init functions.
var commands = map[string]command{}

// exitError makes run exit with code without printing anything more, for
// commands whose output already says what went wrong.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exitCode(cmd string, err error, stderr io.Writer) int {
	var ee exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	fmt.Fprintf(stderr, "grokproxy %s: %v\n", cmd, err)
	return 1
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// loadConfig parses the -config flag of a command and loads the settings.
func loadConfig(name string, args []string, stderr io.Writer) (config.Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML settings file; environment variables override it")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return config.Load(*path, os.Getenv)
}

func serve(args []string, stderr io.Writer) error {
	cfg, err := loadConfig("serve", args, stderr)
	if err != nil {
		return err
	}
	log := observe.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	key, err := a.BootstrapAdmin(ctx)
	if err != nil {
		a.Close()
		return fmt.Errorf("create the first admin key: %w", err)
	}
	if key != "" {
		// The one secret the gateway ever prints: straight to the
		// terminal, never through the logger.
		fmt.Fprintf(stderr, "\nNo admin existed, so one was created. Its API key, shown only this once:\n\n    %s\n\n", key)
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		a.Close()
		return err
	}
	a.Start(ctx)
	log.Info("listening", "addr", ln.Addr().String(), "store", storeKind(cfg), "version", versionString())
	serveErr := a.Serve(ctx, ln)
	closeErr := a.Close()
	log.Info("stopped")
	return errors.Join(serveErr, closeErr)
}

func storeKind(cfg config.Config) string {
	if cfg.IsPostgres() {
		return "postgres"
	}
	return "sqlite"
}

func migrate(args []string, stderr io.Writer) error {
	cfg, err := loadConfig("migrate", args, stderr)
	if err != nil {
		return err
	}
	log := observe.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	st, err := app.OpenStore(context.Background(), cfg, log)
	if err != nil {
		return err
	}
	log.Info("migrations applied", "store", storeKind(cfg))
	return st.Close()
}

// keygen writes a new keyring to a file rather than printing it, so the
// key never lands in a terminal scroll-back or a shell log.
func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "file to create with the new keyring (mode 0600); must not exist")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-o FILE is required")
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, keyring.Generate()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote a new keyring to %s; point GROKPROXY_ENCRYPTION_KEY_FILE at it\n", *out)
	return nil
}

func printSettings(w io.Writer) {
	for _, s := range config.Settings {
		def := s.Default
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(w, "%-32s %-24s %s\n", s.Name, def, s.Help)
	}
}
