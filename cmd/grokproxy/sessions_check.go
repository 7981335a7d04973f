package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/grokproxy/grokproxy/internal/admin"
	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/store"
)

const sessionsCheckUsage = `Usage: grokproxy sessions check [flags] ID

Check one session against its upstream without spending chat quota: the
login, the account tier, the quota left per mode, which chat transport
(rest, ws) and which model selector style work. The REST chat route is
asked with an empty message, which the web app refuses before answering;
the WebSocket gateway gets an upgrade and a session that is closed before
any prompt. An xai session gets one model list call.

Works beside a running serve on the same store. Exits 0 when the session
is usable, 1 when it is not (or the check could not run), 2 on bad usage.

Flags:
`

func sessionsCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sessions check", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	asJSON := fs.Bool("json", false, "print the report as one JSON object instead of text")
	timeout := fs.Duration("timeout", 60*time.Second, "how long the whole check may take, as a Go duration such as 30s")
	if err := parseSessionFlags(fs, sessionsCheckUsage, args, stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{code: 2}
	}
	// Flags may also follow the id.
	if fs.NArg() > 1 {
		id := fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return exitError{code: 2}
		}
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "grokproxy sessions check: unexpected argument %q\n", fs.Arg(0))
			return exitError{code: 2}
		}
		return runSessionsCheck(id, *configPath, *asJSON, *timeout, stdout, stderr)
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, "grokproxy sessions check: missing session ID\n\n"+sessionsCheckUsage)
		return exitError{code: 2}
	}
	return runSessionsCheck(fs.Arg(0), *configPath, *asJSON, *timeout, stdout, stderr)
}

func runSessionsCheck(id, configPath string, asJSON bool, timeout time.Duration, stdout, stderr io.Writer) error {
	ss, err := openSessionStore(configPath, stderr)
	if err != nil {
		return err
	}
	defer ss.st.Close()
	checker, err := app.NewSessionChecker(ss.cfg, ss.st, ss.kr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rep, err := checker.CheckSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no session with id %q", id)
	}
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printCheck(stdout, rep)
	}
	if !rep.Usable {
		return exitError{code: 1}
	}
	return nil
}

// printCheck writes the report as aligned text.
func printCheck(w io.Writer, rep admin.SessionCheck) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "session\t%s (%s)\n", rep.SessionID, rep.Provider)
	login := "failed"
	if rep.Login {
		login = "ok"
		if rep.AccountID != "" {
			login += ", account " + rep.AccountID
		}
	}
	fmt.Fprintf(tw, "login\t%s\n", login)
	if rep.Provider == store.ProviderGrok {
		fmt.Fprintf(tw, "tier\t%s\n", orUnknown(rep.Tier))
		for _, mode := range sortedKeys(rep.Quota) {
			q := rep.Quota[mode]
			if q.Total == 0 {
				fmt.Fprintf(tw, "quota %s\tnot available on this account\n", mode)
				continue
			}
			fmt.Fprintf(tw, "quota %s\t%d of %d left per %s\n", mode, q.Remaining, q.Total,
				time.Duration(q.WindowSeconds)*time.Second)
		}
	}
	for _, name := range sortedKeys(rep.Transports) {
		r := rep.Transports[name]
		fmt.Fprintf(tw, "transport %s\t%s\t%s\n", name, r.Status, r.Detail)
	}
	for _, name := range sortedKeys(rep.Selectors) {
		r := rep.Selectors[name]
		fmt.Fprintf(tw, "selector %s\t%s\t%s\n", name, r.Status, r.Detail)
	}
	if rep.Selector != "" {
		fmt.Fprintf(tw, "configured\ttransport %s, selector %s\n", rep.Transport, rep.Selector)
	}
	usable := "no"
	if rep.Usable {
		usable = "yes"
	}
	fmt.Fprintf(tw, "usable\t%s\n", usable)
	tw.Flush()
	if len(rep.Problems) > 0 {
		fmt.Fprintln(w, "problems:")
		for _, p := range rep.Problems {
			fmt.Fprintln(w, "  - "+p)
		}
	}
}

func orUnknown(s string) string {
	if strings.TrimSpace(s) == "" {
		return "unknown"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
