package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
)

func init() {
	commands["sessions"] = command{summary: "list, import, export, re-encrypt and check upstream sessions", run: sessionsCmd}
}

const sessionsUsage = `Usage:
  grokproxy sessions list      [-config FILE] [-status S] [-provider P] [-json]
  grokproxy sessions import    [-config FILE] [-format F] [-label L] FILE
  grokproxy sessions export    [-config FILE] [-format F] [-o FILE] [-include-cookies]
  grokproxy sessions reencrypt [-config FILE]
  grokproxy sessions check     [-config FILE] [-json] [-timeout D] ID

The commands work on the store named by DATABASE_URL, also beside a running
serve: it picks up imported sessions on its next health check
(SESSION_HEALTH_CHECK_INTERVAL). Import and export read and write the same
formats: text (one cookie per line), JSON (an array of cookie strings or of
objects with cookie_text), JSONL (one such value per line) and YAML (a
"cookies:" list of cookie strings). Run "grokproxy sessions SUBCOMMAND -h"
for the flags of each.
`

func sessionsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, sessionsUsage)
		return exitError{code: 2}
	}
	switch args[0] {
	case "list":
		return sessionsList(args[1:], stdout, stderr)
	case "import":
		return sessionsImport(args[1:], stdout, stderr)
	case "export":
		return sessionsExport(args[1:], stdout, stderr)
	case "reencrypt":
		return sessionsReencrypt(args[1:], stdout, stderr)
	case "check":
		return sessionsCheck(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, sessionsUsage)
		return nil
	}
	fmt.Fprintf(stderr, "grokproxy sessions: unknown subcommand %q\n\n%s", args[0], sessionsUsage)
	return exitError{code: 2}
}

// sessionStore is the store, keyring and logger of a sessions command.
type sessionStore struct {
	cfg config.Config
	st  store.Store
	kr  *keyring.Keyring
	log *slog.Logger
}

// openSessionStore loads the settings from configPath and the environment,
// the encryption keyring and the store.
func openSessionStore(configPath string, stderr io.Writer) (*sessionStore, error) {
	cfg, err := config.Load(configPath, os.Getenv)
	if err != nil {
		return nil, err
	}
	log := observe.NewLogger(stderr, "warn", cfg.LogFormat)
	kr, created, err := app.LoadKeyring(cfg)
	if err != nil {
		return nil, err
	}
	if created {
		fmt.Fprintf(stderr, "generated an encryption key file at %s; back it up with the database\n", app.KeyFilePath(cfg))
	}
	st, err := app.OpenStore(context.Background(), cfg, log)
	if err != nil {
		return nil, err
	}
	return &sessionStore{cfg: cfg, st: st, kr: kr, log: log}, nil
}

// parseSessionFlags parses args with fs. -h anywhere prints usage and the
// flags to stdout and returns flag.ErrHelp, which exits 0.
func parseSessionFlags(fs *flag.FlagSet, usage string, args []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, usage)
			fs.PrintDefaults()
			return flag.ErrHelp
		}
	}
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs.Parse(args)
}

const sessionsListUsage = `Usage: grokproxy sessions list [flags]

List the sessions in the store, without their cookies.

Flags:
`

func sessionsList(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sessions list", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	status := fs.String("status", "", "show only sessions with this status: healthy, quarantined, expired or revoked")
	provider := fs.String("provider", "", "show only sessions of this provider: grok or xai")
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	if err := parseSessionFlags(fs, sessionsListUsage, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	ss, err := openSessionStore(*configPath, stderr)
	if err != nil {
		return err
	}
	defer ss.st.Close()
	sessions, err := ss.st.Sessions(context.Background(), store.SessionFilter{Status: *status, Provider: *provider})
	if err != nil {
		return err
	}

	rows := make([]exportRow, 0, len(sessions))
	for _, s := range sessions {
		rows = append(rows, rowOf(s))
	}
	if *asJSON {
		return writeJSONArray(stdout, rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROVIDER\tSTATUS\tRESTING UNTIL\tREQUESTS\tFAILURES\tLAST USED\tLABEL\tREASON")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", r.ID, r.Provider, r.Status,
			sessionTime(r.CooldownUntil), r.UsageCount, r.FailureCount, sessionTime(r.LastUsedAt), r.Label, r.StatusReason)
	}
	return tw.Flush()
}

func sessionTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

const sessionsImportUsage = `Usage: grokproxy sessions import [flags] FILE

Add the Grok web sessions in FILE to the store and print how many were
added, were duplicates of stored sessions, or were invalid. FILE holds
cookies in one of these formats:

  text   one cookie per line ("sso=…; sso-rw=…" or the bare sso value);
         blank lines and lines starting with # are skipped
  json   an array of cookie strings, or of objects with cookie_text and
         optionally label, proxy_url, max_concurrency and weight
  jsonl  one such string or object per line
  yaml   a "cookies:" list of cookie strings; other keys are ignored

Flags:
`

func sessionsImport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sessions import", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	format := fs.String("format", "", "format of FILE: text, json, jsonl or yaml (default: from the file extension, else from the content)")
	label := fs.String("label", "", "label for sessions that bring none of their own")
	if err := parseSessionFlags(fs, sessionsImportUsage, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, sessionsImportUsage)
		fs.PrintDefaults()
		return exitError{code: 2}
	}
	path := fs.Arg(0)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	items, err := parseImport(path, *format, data)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}

	ss, err := openSessionStore(*configPath, stderr)
	if err != nil {
		return err
	}
	defer ss.st.Close()
	p := pool.New(pool.DefaultConfig(), ss.st, ss.kr, nil, nil, nil, ss.log)
	defer p.Close(context.Background())

	var added, duplicate, invalid int
	for _, it := range items {
		if it.label == "" {
			it.label = *label
		}
		switch err := importOne(p, it); {
		case err == nil:
			added++
		case errors.Is(err, store.ErrConflict):
			duplicate++
		case errors.As(err, new(invalidItem)):
			invalid++
			fmt.Fprintf(stderr, "%s: %v\n", it.where, err)
		default:
			fmt.Fprintf(stdout, "added %d, duplicate %d, invalid %d\n", added, duplicate, invalid)
			return fmt.Errorf("%s: %w", it.where, err)
		}
	}
	fmt.Fprintf(stdout, "added %d, duplicate %d, invalid %d\n", added, duplicate, invalid)
	return nil
}

// invalidItem is an import entry that cannot become a session. Its text
// never holds the cookie.
type invalidItem struct{ reason string }

func (e invalidItem) Error() string { return "invalid: " + e.reason }

func importOne(p *pool.Pool, it importItem) error {
	if it.problem != "" {
		return invalidItem{it.problem}
	}
	c, err := grokweb.ParseCookie(it.cookie)
	if err != nil {
		return invalidItem{err.Error()}
	}
	if it.maxConcurrency < 0 || it.weight < 0 {
		return invalidItem{"max_concurrency and weight must not be negative"}
	}
	_, err = p.Add(context.Background(), pool.AddRequest{
		Provider:       store.ProviderGrok,
		Credential:     secret.New(strings.TrimSpace(it.cookie)),
		DedupKey:       c.DedupKey(),
		Label:          it.label,
		ProxyURL:       secret.New(strings.TrimSpace(it.proxyURL)),
		MaxConcurrency: it.maxConcurrency,
		Weight:         it.weight,
	})
	return err
}

const sessionsExportUsage = `Usage: grokproxy sessions export [flags]

Write the sessions in the store in an import format. Cookies and proxy
URLs are written only with -include-cookies; keep such a file private.
The text format holds nothing but cookies, so it needs -include-cookies.

Flags:
`

func sessionsExport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sessions export", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	format := fs.String("format", "", "output format: text, json, jsonl or yaml (default: from the -o extension, else json)")
	out := fs.String("o", "", "file to write, created with mode 0600 (default: standard output)")
	withCookies := fs.Bool("include-cookies", false, "include each session's cookie and proxy URL in clear text")
	status := fs.String("status", "", "export only sessions with this status: healthy, quarantined, expired or revoked")
	if err := parseSessionFlags(fs, sessionsExportUsage, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	f := *format
	if f == "" {
		f = formatOf(*out)
	}
	if f == "" {
		f = formatJSON
	}
	if f == formatText && !*withCookies {
		return errors.New("the text format holds only cookies: add -include-cookies, or pick -format json, jsonl or yaml")
	}
	if !validFormat(f) {
		return fmt.Errorf("unknown format %q: use text, json, jsonl or yaml", f)
	}

	ss, err := openSessionStore(*configPath, stderr)
	if err != nil {
		return err
	}
	defer ss.st.Close()
	sessions, err := ss.st.Sessions(context.Background(), store.SessionFilter{Status: *status})
	if err != nil {
		return err
	}
	rows, err := exportRows(ss.kr, sessions, *withCookies)
	if err != nil {
		return err
	}

	w := stdout
	var file *os.File
	if *out != "" {
		file, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		w = file
	}
	err = writeExport(w, f, rows)
	if file != nil {
		err = errors.Join(err, file.Close())
		if err == nil {
			fmt.Fprintf(stderr, "wrote %d sessions to %s\n", len(rows), *out)
		}
	}
	return err
}

// exportRows turns stored sessions into export rows, decrypting cookies and
// proxy URLs when withCookies is set.
func exportRows(kr *keyring.Keyring, sessions []store.Session, withCookies bool) ([]exportRow, error) {
	rows := make([]exportRow, 0, len(sessions))
	for _, s := range sessions {
		r := rowOf(s)
		if withCookies {
			cred, proxy, err := pool.OpenCredential(kr, s)
			if err != nil {
				return nil, err
			}
			r.CookieText, r.ProxyURL = cred.Reveal(), proxy.Reveal()
		}
		rows = append(rows, r)
	}
	return rows, nil
}

const sessionsReencryptUsage = `Usage: grokproxy sessions reencrypt [flags]

Re-encrypt every session cookie and proxy URL that an older key of
GROKPROXY_ENCRYPTION_KEY sealed with its newest (last) key. Keep the old
keys in GROKPROXY_ENCRYPTION_KEY until this has run on every store.

Flags:
`

func sessionsReencrypt(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sessions reencrypt", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	if err := parseSessionFlags(fs, sessionsReencryptUsage, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	ss, err := openSessionStore(*configPath, stderr)
	if err != nil {
		return err
	}
	defer ss.st.Close()
	ctx := context.Background()
	sessions, err := ss.st.Sessions(ctx, store.SessionFilter{})
	if err != nil {
		return err
	}

	var moved, current, failed int
	for _, s := range sessions {
		changed, err := reencryptSession(ctx, ss.st, ss.kr, s)
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(stderr, "session %s: %v\n", s.ID, err)
		case changed:
			moved++
		default:
			current++
		}
	}
	fmt.Fprintf(stdout, "re-encrypted %d, already on key %s %d, failed %d\n", moved, ss.kr.Newest(), current, failed)
	if failed > 0 {
		return exitError{code: 1}
	}
	return nil
}

// reencryptSession seals s's credential and proxy URL with the newest key
// when an older key sealed either. It reports whether it wrote the row.
func reencryptSession(ctx context.Context, st store.Store, kr *keyring.Keyring, s store.Session) (bool, error) {
	credBinding, proxyBinding := pool.CredentialBinding(s.ID), pool.ProxyBinding(s.ID)
	stale := func(ct []byte) (bool, error) {
		if len(ct) == 0 {
			return false, nil
		}
		id, err := kr.KeyID(ct)
		return id != kr.Newest(), err
	}
	credStale, err := stale(s.Credential)
	if err != nil {
		return false, err
	}
	proxyStale, err := stale(s.ProxyURL)
	if err != nil {
		return false, err
	}
	if !credStale && !proxyStale {
		return false, nil
	}

	cred, proxy := s.Credential, s.ProxyURL
	if credStale {
		if cred, err = reseal(kr, cred, credBinding); err != nil {
			return false, err
		}
	}
	if proxyStale {
		if proxy, err = reseal(kr, proxy, proxyBinding); err != nil {
			return false, err
		}
	}
	if err := st.SetSessionCredential(ctx, s.ID, cred, proxy); err != nil {
		return false, err
	}
	return true, nil
}

func reseal(kr *keyring.Keyring, ct []byte, b keyring.Binding) ([]byte, error) {
	plain, err := kr.Decrypt(ct, b)
	if err != nil {
		return nil, err
	}
	return kr.Encrypt(plain, b)
}

// Import and export formats.
const (
	formatText  = "text"
	formatJSON  = "json"
	formatJSONL = "jsonl"
	formatYAML  = "yaml"
)

func validFormat(f string) bool {
	return f == formatText || f == formatJSON || f == formatJSONL || f == formatYAML
}

// formatOf returns the format named by path's extension, or "" when the
// extension names none.
func formatOf(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".txt":
		return formatText
	case ".json":
		return formatJSON
	case ".jsonl", ".ndjson":
		return formatJSONL
	case ".yaml", ".yml":
		return formatYAML
	}
	return ""
}

// sniffFormat guesses the format of data: JSON when it starts with a JSON
// value, YAML when a line starts with "cookies:", else text.
func sniffFormat(data []byte) string {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '[' || trimmed[0] == '{' || trimmed[0] == '"') {
		return formatJSON
	}
	for line := range strings.SplitSeq(string(trimmed), "\n") {
		if strings.HasPrefix(line, "cookies:") {
			return formatYAML
		}
	}
	return formatText
}

// importItem is one session to import. problem is set when the entry is
// unusable before its cookie is even parsed.
type importItem struct {
	where          string // "line 3" or "item 2", for messages
	cookie         string
	label          string
	proxyURL       string
	maxConcurrency int
	weight         int
	problem        string
}

// parseImport reads the sessions of an import file in format, or in the
// format its name or content suggests when format is empty.
func parseImport(name, format string, data []byte) ([]importItem, error) {
	if format == "" {
		format = formatOf(name)
	}
	if format == "" {
		format = sniffFormat(data)
	}
	switch format {
	case formatText:
		return parseTextImport(data), nil
	case formatJSON, formatJSONL:
		// A JSON file holds one value and a JSONL file one per line; a
		// stream decoder reads both.
		return parseJSONImport(data)
	case formatYAML:
		return parseYAMLImport(data)
	}
	return nil, fmt.Errorf("unknown format %q: use text, json, jsonl or yaml", format)
}

func parseTextImport(data []byte) []importItem {
	var items []importItem
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		items = append(items, importItem{where: fmt.Sprintf("line %d", i+1), cookie: line})
	}
	return items
}

func parseJSONImport(data []byte) ([]importItem, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var values []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %s", jsonProblemText(err))
		}
		switch v := v.(type) {
		case []any:
			values = append(values, v...)
		case map[string]any:
			if list, ok := v["cookies"].([]any); ok && v["cookie_text"] == nil {
				values = append(values, list...)
				continue
			}
			values = append(values, v)
		default:
			values = append(values, v)
		}
	}
	items := make([]importItem, 0, len(values))
	for i, v := range values {
		items = append(items, itemOf(fmt.Sprintf("item %d", i+1), v))
	}
	return items, nil
}

// jsonProblemText describes a JSON error without quoting the input, which
// may hold a cookie.
func jsonProblemText(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("unexpected %s at byte %d", typ.Value, typ.Offset)
	}
	return "unreadable value"
}

func parseYAMLImport(data []byte) ([]importItem, error) {
	var doc struct {
		Cookies []any `yaml:"cookies"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml.v3 messages quote the offending text, which may be a cookie.
		return nil, errors.New("invalid YAML: expected a mapping with a \"cookies:\" list of strings")
	}
	items := make([]importItem, 0, len(doc.Cookies))
	for i, v := range doc.Cookies {
		items = append(items, itemOf(fmt.Sprintf("cookie %d", i+1), v))
	}
	return items, nil
}

// itemOf reads one entry: a cookie string, or an object with cookie_text.
func itemOf(where string, v any) importItem {
	it := importItem{where: where}
	switch v := v.(type) {
	case string:
		it.cookie = v
	case map[string]any:
		cookie, ok := v["cookie_text"].(string)
		if !ok || strings.TrimSpace(cookie) == "" {
			it.problem = "missing cookie_text"
			return it
		}
		it.cookie = cookie
		it.label, _ = v["label"].(string)
		it.proxyURL, _ = v["proxy_url"].(string)
		it.maxConcurrency = intField(v["max_concurrency"])
		it.weight = intField(v["weight"])
	default:
		it.problem = "expected a cookie string or an object with cookie_text"
	}
	return it
}

func intField(v any) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case int:
		return n
	case float64:
		return int(n)
	}
	return 0
}

// exportRow is one session as list and export write it. CookieText and
// ProxyURL are set only when cookies are exported.
type exportRow struct {
	ID             string     `json:"id" yaml:"id"`
	Provider       string     `json:"provider" yaml:"provider"`
	Label          string     `json:"label" yaml:"label"`
	Status         string     `json:"status" yaml:"status"`
	StatusReason   string     `json:"status_reason" yaml:"status_reason"`
	CooldownUntil  *time.Time `json:"cooldown_until,omitempty" yaml:"cooldown_until,omitempty"`
	MaxConcurrency int        `json:"max_concurrency" yaml:"max_concurrency"`
	Weight         int        `json:"weight" yaml:"weight"`
	CreatedAt      time.Time  `json:"created_at" yaml:"created_at"`
	LastUsedAt     *time.Time `json:"last_used_at,omitempty" yaml:"last_used_at,omitempty"`
	UsageCount     int64      `json:"usage_count" yaml:"usage_count"`
	FailureCount   int64      `json:"failure_count" yaml:"failure_count"`
	CookieText     string     `json:"cookie_text,omitempty" yaml:"-"`
	ProxyURL       string     `json:"proxy_url,omitempty" yaml:"proxy_url,omitempty"`
}

func rowOf(s store.Session) exportRow {
	r := exportRow{
		ID: s.ID, Provider: s.Provider, Label: s.Label, Status: s.Status, StatusReason: s.StatusReason,
		MaxConcurrency: s.MaxConcurrency, Weight: s.Weight, CreatedAt: s.CreatedAt,
		UsageCount: s.UsageCount, FailureCount: s.FailureCount,
	}
	if s.CooldownUntil.After(time.Now()) {
		at := s.CooldownUntil
		r.CooldownUntil = &at
	}
	if !s.LastUsedAt.IsZero() {
		at := s.LastUsedAt
		r.LastUsedAt = &at
	}
	return r
}

// writeExport writes rows in format f.
func writeExport(w io.Writer, f string, rows []exportRow) error {
	switch f {
	case formatText:
		bw := bufio.NewWriter(w)
		for _, r := range rows {
			fmt.Fprintln(bw, r.CookieText)
		}
		return bw.Flush()
	case formatJSON:
		return writeJSONArray(w, rows)
	case formatJSONL:
		enc := json.NewEncoder(w)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	case formatYAML:
		// Cookies go in the "cookies:" list that import reads, in the
		// order of "sessions:", which import ignores.
		doc := struct {
			Cookies  []string    `yaml:"cookies,omitempty"`
			Sessions []exportRow `yaml:"sessions"`
		}{Sessions: rows}
		for _, r := range rows {
			if r.CookieText != "" {
				doc.Cookies = append(doc.Cookies, r.CookieText)
			}
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(doc); err != nil {
			return err
		}
		return enc.Close()
	}
	return fmt.Errorf("unknown format %q", f)
}

func writeJSONArray(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
