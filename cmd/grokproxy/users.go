package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/store"
)

func init() {
	commands["users"] = command{summary: "list, create, update and delete users", run: usersCmd}
}

const usersUsage = `Usage:
  grokproxy users list   [-config FILE] [-json]
  grokproxy users create -name NAME [flags]
  grokproxy users update ID [flags]
  grokproxy users delete ID [-config FILE]

Users own API keys (see "grokproxy keys") and carry their limits. The
commands work on the store named by DATABASE_URL, also beside a running
serve. Run "grokproxy users SUBCOMMAND -h" for the flags of each.
`

func usersCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usersUsage)
		return exitError{code: 2}
	}
	switch args[0] {
	case "list":
		return usersList(args[1:], stdout, stderr)
	case "create":
		return usersCreate(args[1:], stdout, stderr)
	case "update":
		return usersUpdate(args[1:], stdout, stderr)
	case "delete":
		return usersDelete(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usersUsage)
		return nil
	}
	fmt.Fprintf(stderr, "grokproxy users: unknown subcommand %q\n\n%s", args[0], usersUsage)
	return exitError{code: 2}
}

// accounts is what the users and keys commands work with: the store and
// an authenticator that mints, rotates and revokes keys.
type accounts struct {
	cfg   config.Config
	st    store.Store
	auth  *auth.Authenticator
	redis *redis.Client
}

// openAccounts loads the settings from configPath and the environment and
// opens the store. With REDIS_URL set, revocations and user changes are
// also pushed to running replicas.
func openAccounts(configPath string, stderr io.Writer) (*accounts, error) {
	cfg, err := config.Load(configPath, os.Getenv)
	if err != nil {
		return nil, err
	}
	log := observe.NewLogger(stderr, "warn", cfg.LogFormat)
	st, err := app.OpenStore(context.Background(), cfg, log)
	if err != nil {
		return nil, err
	}
	acc := &accounts{cfg: cfg, st: st}
	acc.auth = auth.New(auth.Config{BcryptCost: cfg.BcryptCost, DefaultRateLimitPerMinute: cfg.UserRateLimitPerMinute},
		st, time.Now, log)
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		acc.redis = redis.NewClient(opts)
		acc.auth.SetRedis(acc.redis)
	}
	return acc, nil
}

func (a *accounts) Close() error {
	if a.redis != nil {
		a.redis.Close()
	}
	return a.st.Close()
}

// newFlags returns a flag set that prints usage, then its flags, on -h.
func newFlags(name, usage string, stdout, stderr io.Writer, help *bool) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		out := stderr
		if *help {
			out = stdout
		}
		fs.SetOutput(out)
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, accepting one leading positional argument before
// the flags (as in "users update ID -active=false"). It returns that
// argument, or "" when there is none. -h prints the help to stdout.
func parseFlags(fs *flag.FlagSet, args []string, help *bool) (string, error) {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			*help = true
		}
	}
	var pos string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		if pos != "" {
			return "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		pos = fs.Arg(0)
		if fs.NArg() > 1 {
			return "", fmt.Errorf("unexpected argument %q", fs.Arg(1))
		}
	}
	return pos, nil
}

// userFlags are the user fields that create and update set. A flag left
// out leaves its field as it is.
type userFlags struct {
	name, role, rateLimit, models, expires string
	maxConcurrent                          int
	active                                 bool
}

func (u *userFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&u.name, "name", "", "user name, 1 to 200 characters")
	fs.StringVar(&u.role, "role", "", `role: "user" or "admin" (create default: user)`)
	fs.StringVar(&u.rateLimit, "rate-limit", "", `requests per minute, 1 to 1000000, or "default" for USER_RATE_LIMIT_PER_MINUTE`)
	fs.IntVar(&u.maxConcurrent, "max-concurrent", 0, "in-flight requests per key at most (0: no cap)")
	fs.StringVar(&u.models, "models", "", `public model ids the user may call, comma-separated ("all" or empty: every model)`)
	fs.StringVar(&u.expires, "expires", "", `when the user stops working: an RFC 3339 time, a Go duration from now such as 720h, or "never"`)
	fs.BoolVar(&u.active, "active", true, "whether the user's keys work")
}

// apply copies the flags that were given on the command line to u.
func (u *userFlags) apply(fs *flag.FlagSet, dst *store.User, now time.Time) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if err != nil {
			return
		}
		switch f.Name {
		case "name":
			name := strings.TrimSpace(u.name)
			if name == "" || len(name) > 200 {
				err = errors.New("-name: must hold 1 to 200 characters")
			}
			dst.Name = name
		case "role":
			if u.role != store.RoleUser && u.role != store.RoleAdmin {
				err = fmt.Errorf("-role: %q is not user or admin", u.role)
			}
			dst.Role = u.role
		case "rate-limit":
			dst.RateLimitPerMinute, err = parseRateLimit(u.rateLimit)
		case "max-concurrent":
			if u.maxConcurrent < 0 || u.maxConcurrent > 10_000 {
				err = fmt.Errorf("-max-concurrent: %d is out of range 0-10000", u.maxConcurrent)
			}
			dst.MaxConcurrentPerKey = u.maxConcurrent
		case "models":
			dst.Models = parseModels(u.models)
		case "expires":
			dst.ExpiresAt, err = parseExpiry(u.expires, now)
		case "active":
			dst.Active = u.active
		}
	})
	return err
}

func parseRateLimit(v string) (*int, error) {
	if v == "default" || v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1_000_000 {
		return nil, fmt.Errorf("-rate-limit: %q is not a number from 1 to 1000000 or \"default\"", v)
	}
	return &n, nil
}

func parseModels(v string) []string {
	if v == "all" {
		return nil
	}
	var out []string
	for _, m := range strings.Split(v, ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// parseExpiry reads an RFC 3339 time, a duration from now, or "never".
func parseExpiry(v string, now time.Time) (time.Time, error) {
	switch v {
	case "", "never":
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("-expires: %q is not an RFC 3339 time, a positive duration or \"never\"", v)
	}
	return now.Add(d).UTC(), nil
}

const usersListUsage = "Usage: grokproxy users list [-config FILE] [-json]\n\nLists every user.\n\nFlags:\n"

func usersList(args []string, stdout, stderr io.Writer) error {
	var help bool
	fs := newFlags("users list", usersListUsage, stdout, stderr, &help)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	asJSON := fs.Bool("json", false, "print JSON, one object per user, instead of a table")
	if pos, err := parseFlags(fs, args, &help); err != nil {
		return err
	} else if pos != "" {
		return fmt.Errorf("unexpected argument %q", pos)
	}
	acc, err := openAccounts(*configPath, stderr)
	if err != nil {
		return err
	}
	defer acc.Close()
	users, err := acc.st.Users(context.Background())
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, u := range users {
			if err := enc.Encode(userJSON(u)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tACTIVE\tLIMIT/MIN\tMAX CONCURRENT\tMODELS\tEXPIRES")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%d\t%s\t%s\n", u.ID, u.Name, u.Role, u.Active,
			rateLimitText(u.RateLimitPerMinute, acc.cfg.UserRateLimitPerMinute), u.MaxConcurrentPerKey,
			modelsText(u.Models), timeText(u.ExpiresAt))
	}
	return tw.Flush()
}

// userJSON is a user as the commands print it, the same fields the admin
// API shows.
func userJSON(u store.User) map[string]any {
	m := map[string]any{"id": u.ID, "name": u.Name, "role": u.Role, "active": u.Active,
		"rate_limit_per_minute": u.RateLimitPerMinute, "max_concurrent_per_key": u.MaxConcurrentPerKey,
		"models": u.Models, "expires_at": nil, "created_at": u.CreatedAt, "updated_at": u.UpdatedAt}
	if u.Models == nil {
		m["models"] = []string{}
	}
	if !u.ExpiresAt.IsZero() {
		m["expires_at"] = u.ExpiresAt
	}
	return m
}

func rateLimitText(v *int, def int) string {
	if v == nil {
		return fmt.Sprintf("%d (default)", def)
	}
	return strconv.Itoa(*v)
}

func modelsText(models []string) string {
	if len(models) == 0 {
		return "all"
	}
	return strings.Join(models, ",")
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

const usersCreateUsage = "Usage: grokproxy users create -name NAME [flags]\n\nCreates a user and prints it. Give it a key with \"grokproxy keys create\".\n\nFlags:\n"

func usersCreate(args []string, stdout, stderr io.Writer) error {
	var help bool
	fs := newFlags("users create", usersCreateUsage, stdout, stderr, &help)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	var uf userFlags
	uf.register(fs)
	if pos, err := parseFlags(fs, args, &help); err != nil {
		return err
	} else if pos != "" {
		return fmt.Errorf("unexpected argument %q", pos)
	}
	if strings.TrimSpace(uf.name) == "" {
		return errors.New("-name is required")
	}
	now := time.Now().UTC()
	u := store.User{ID: "usr_" + randomHex(12), Role: store.RoleUser, Active: true, CreatedAt: now, UpdatedAt: now}
	if err := uf.apply(fs, &u, now); err != nil {
		return err
	}
	acc, err := openAccounts(*configPath, stderr)
	if err != nil {
		return err
	}
	defer acc.Close()
	if err := acc.st.CreateUser(context.Background(), &u); err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return json.NewEncoder(stdout).Encode(userJSON(u))
}

const usersUpdateUsage = "Usage: grokproxy users update ID [flags]\n\nChanges the fields given as flags and prints the user. Running replicas\napply the change at once when REDIS_URL is set, else within 5 minutes.\n\nFlags:\n"

func usersUpdate(args []string, stdout, stderr io.Writer) error {
	var help bool
	fs := newFlags("users update", usersUpdateUsage, stdout, stderr, &help)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	var uf userFlags
	uf.register(fs)
	id, err := parseFlags(fs, args, &help)
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("the user ID is required")
	}
	acc, err := openAccounts(*configPath, stderr)
	if err != nil {
		return err
	}
	defer acc.Close()
	ctx := context.Background()
	u, err := acc.st.User(ctx, id)
	if err != nil {
		return fmt.Errorf("find user %q: %w", id, err)
	}
	now := time.Now().UTC()
	if err := uf.apply(fs, &u, now); err != nil {
		return err
	}
	u.UpdatedAt = now
	if err := acc.st.UpdateUser(ctx, &u); err != nil {
		return fmt.Errorf("update user %q: %w", id, err)
	}
	acc.auth.ForgetUser(id)
	return json.NewEncoder(stdout).Encode(userJSON(u))
}

const usersDeleteUsage = "Usage: grokproxy users delete ID [-config FILE]\n\nRevokes every key of the user, then deletes the user.\n\nFlags:\n"

func usersDelete(args []string, stdout, stderr io.Writer) error {
	var help bool
	fs := newFlags("users delete", usersDeleteUsage, stdout, stderr, &help)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	id, err := parseFlags(fs, args, &help)
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("the user ID is required")
	}
	acc, err := openAccounts(*configPath, stderr)
	if err != nil {
		return err
	}
	defer acc.Close()
	ctx := context.Background()
	if _, err := acc.st.User(ctx, id); err != nil {
		return fmt.Errorf("find user %q: %w", id, err)
	}
	keys, err := acc.st.APIKeys(ctx, id)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.RevokedAt.IsZero() {
			if err := acc.auth.RevokeKey(ctx, k.ID); err != nil {
				return err
			}
		}
	}
	if err := acc.st.DeleteUser(ctx, id); err != nil {
		return fmt.Errorf("delete user %q: %w", id, err)
	}
	acc.auth.ForgetUser(id)
	fmt.Fprintf(stdout, "deleted user %s\n", id)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}
