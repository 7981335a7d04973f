package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/store"
)

func init() {
	commands["audit"] = command{summary: "verify and list the admin audit trail", run: auditCmd}
}

const auditUsage = `Usage:
  grokproxy audit verify [-config FILE]
  grokproxy audit list   [-config FILE] [-limit N] [-before SEQ] [-json]

Every admin action that changes state leaves an audit event. Events form a
hash chain: each row's hash covers the row before it, so an edited or
deleted row breaks the chain. "verify" walks it and exits 0 when it is
intact, 1 naming the first broken row otherwise. Both commands read the
store named by DATABASE_URL and work beside a running serve.
`

func auditCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return exitError{code: 2}
	}
	switch args[0] {
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "list":
		return auditList(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, auditUsage)
		return nil
	}
	fmt.Fprintf(stderr, "grokproxy audit: unknown subcommand %q\n\n%s", args[0], auditUsage)
	return exitError{code: 2}
}

// openStoreCmd loads the settings from configPath and the environment and
// opens the store, logging warnings to stderr.
func openStoreCmd(configPath string, stderr io.Writer) (store.Store, error) {
	_, st, err := loadStore(configPath, stderr)
	return st, err
}

func loadStore(configPath string, stderr io.Writer) (config.Config, store.Store, error) {
	cfg, err := config.Load(configPath, os.Getenv)
	if err != nil {
		return cfg, nil, err
	}
	log := observe.NewLogger(stderr, "warn", cfg.LogFormat)
	st, err := app.OpenStore(context.Background(), cfg, log)
	return cfg, st, err
}

func auditVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: grokproxy audit verify [-config FILE]\n\n"+
			"Walks the audit hash chain; exit 0 when intact, 1 at the first broken row.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	st, err := openStoreCmd(*configPath, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	check, err := st.VerifyAuditChain(context.Background())
	if err != nil {
		return err
	}
	if !check.Intact() {
		fmt.Fprintf(stderr, "audit chain BROKEN at seq %d (event %s): %s; %d rows read\n",
			check.BrokenSeq, check.BrokenID, check.Reason, check.Checked)
		return exitError{code: 1}
	}
	fmt.Fprintf(stdout, "audit chain intact: %d events\n", check.Checked)
	return nil
}

func auditList(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	limit := fs.Int("limit", 50, "number of events to show, newest first")
	before := fs.Int64("before", 0, "show events with a sequence number below this one (0: from the newest)")
	asJSON := fs.Bool("json", false, "print one JSON object per event instead of a table")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: grokproxy audit list [flags]\n\nLists audit events, newest first.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *limit < 1 {
		return fmt.Errorf("-limit must be at least 1, got %d", *limit)
	}
	st, err := openStoreCmd(*configPath, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	events, err := st.AuditEvents(context.Background(), store.AuditEventFilter{BeforeSeq: *before, Limit: *limit})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range events {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAT\tACTOR\tACTION\tTARGET\tCLIENT IP\tSTATUS")
	for _, e := range events {
		status := ""
		if v, ok := e.Details["status"].(float64); ok {
			status = strconv.Itoa(int(v))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.At.Format(time.RFC3339),
			e.Actor, e.Action, e.Target, e.ClientIP, status)
	}
	return tw.Flush()
}

// parseNoArgs parses args into fs and refuses positional arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
