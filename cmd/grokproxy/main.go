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
		err = serve(rest, stdout, stderr)
	case "migrate":
		err = migrate(rest, stdout, stderr)
	case "keygen":
		err = keygen(rest, stdout, stderr)
	case "settings":
		err = settings(rest, stdout, stderr)
	case "version":
		err = printVersion(rest, stdout, stderr)
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

// commandFlags is the flag set of a built-in command. -h prints usage and
// the flags to stdout; a bad flag prints the error and a hint to stderr.
type commandFlags struct {
	*flag.FlagSet
	usage          string
	stdout, stderr io.Writer
}

func newCommandFlags(name, usage string, stdout, stderr io.Writer) *commandFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	return &commandFlags{FlagSet: fs, usage: usage, stdout: stdout, stderr: stderr}
}

// parse parses args and accepts no positional argument.
func (f *commandFlags) parse(args []string) error {
	err := f.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		f.printHelp()
		return err
	case err != nil:
		fmt.Fprintf(f.stderr, "run \"grokproxy %s -h\" for help\n", f.Name())
		return exitError{code: 2}
	case f.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", f.Arg(0))
	}
	return nil
}

func (f *commandFlags) printHelp() {
	fmt.Fprint(f.stdout, f.usage)
	n := 0
	f.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(f.stdout, "\nFlags:")
		f.SetOutput(f.stdout)
		f.PrintDefaults()
		f.SetOutput(f.stderr)
	}
}

// configFlag adds -config to f.
func configFlag(f *commandFlags) *string {
	return f.String("config", "", "path of a YAML settings file (keys are the setting names); environment variables override it")
}

// loadConfig loads the settings from the file at path and the environment.
func loadConfig(path string) (config.Config, error) {
	return config.Load(path, os.Getenv)
}

const serveUsage = `Usage: grokproxy serve [-config FILE]

Runs the gateway: opens the store, applies pending migrations, starts the
session pool and answers HTTP on HOST:PORT until SIGINT or SIGTERM. On
SIGTERM it stops accepting connections, lets running requests and streams
finish for up to SHUTDOWN_TIMEOUT, writes the pending audit records, then
exits 0. An invalid setting stops the start with a message naming it.

Settings are read from environment variables (and the -config file); a
secret NAME may instead be read from the file named by NAME_FILE. Run
"grokproxy settings" for every setting with its default and unit.
`

func serve(args []string, stdout, stderr io.Writer) error {
	f := newCommandFlags("serve", serveUsage, stdout, stderr)
	path := configFlag(f)
	if err := f.parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	logOut := observe.NewLogWriter(stderr, cfg.LogFlushInterval)
	defer logOut.Close()
	log := observe.NewLogger(logOut, cfg.LogLevel, cfg.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	// Listen before creating the first admin key, so that a start that
	// cannot bind its port does not use up the one showing of the key.
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		a.Close()
		return err
	}
	key, err := a.BootstrapAdmin(ctx)
	if err != nil {
		ln.Close()
		a.Close()
		return fmt.Errorf("create the first admin key: %w", err)
	}
	if key != "" {
		// The one secret the gateway ever prints: straight to the
		// terminal, never through the logger, after the lines logged
		// so far.
		logOut.Flush()
		fmt.Fprintf(stderr, "\nNo admin existed, so one was created. Its API key, shown only this once:\n\n    %s\n\n", key)
	}
	// The background loops outlive the signal: streams that finish
	// during the drain still need the pool and the audit writer. Close
	// stops them.
	defer app.TuneGC(cfg, log)()
	a.Start(context.Background())
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

const migrateUsage = `Usage: grokproxy migrate [-config FILE]

Applies pending database migrations to the store named by DATABASE_URL and
exits. serve does the same on start; run this first when several replicas
start at once. It is safe beside a running serve.
`

func migrate(args []string, stdout, stderr io.Writer) error {
	f := newCommandFlags("migrate", migrateUsage, stdout, stderr)
	path := configFlag(f)
	if err := f.parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
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
const keygenUsage = `Usage: grokproxy keygen -o FILE

Writes a new encryption keyring (one 32-byte AES-256 key with its id) to
FILE, created with mode 0600. Point GROKPROXY_ENCRYPTION_KEY_FILE at it.
`

func keygen(args []string, stdout, stderr io.Writer) error {
	flags := newCommandFlags("keygen", keygenUsage, stdout, stderr)
	out := flags.String("o", "", "path of the file to create with the new keyring (mode 0600); it must not exist")
	if err := flags.parse(args); err != nil {
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

const settingsUsage = `Usage: grokproxy settings

Lists every setting: its environment variable, its default and what it
sets, in what unit. Durations are Go durations such as 500ms, 30s or 5m.
Settings marked [secret] may instead be read from the file named by
NAME_FILE.
`

func settings(args []string, stdout, stderr io.Writer) error {
	if err := newCommandFlags("settings", settingsUsage, stdout, stderr).parse(args); err != nil {
		return err
	}
	printSettings(stdout)
	return nil
}

const versionUsage = `Usage: grokproxy version

Prints the version of this build.
`

func printVersion(args []string, stdout, stderr io.Writer) error {
	if err := newCommandFlags("version", versionUsage, stdout, stderr).parse(args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionString())
	return nil
}

func printSettings(w io.Writer) {
	for _, s := range config.Settings {
		def := s.Default
		if def == "" {
			def = "(empty)"
		}
		help := s.Help
		if s.Secret {
			help += " [secret; " + s.Name + "_FILE reads it from a file]"
		}
		fmt.Fprintf(w, "%-32s %-24s %s\n", s.Name, def, help)
	}
}
