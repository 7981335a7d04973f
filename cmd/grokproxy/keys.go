package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

func init() {
	commands["keys"] = command{summary: "create, list, revoke and rotate API keys", run: keysCmd}
}

const keysUsage = `Usage:
  grokproxy keys create -user ID [-name NAME] [-expires WHEN] [-config FILE]
  grokproxy keys list   -user ID [-json] [-config FILE]
  grokproxy keys revoke KEY_ID [-config FILE]
  grokproxy keys rotate KEY_ID [-grace DURATION] [-request-id ID] [-config FILE]

create and rotate print the new key's text once, on its own line; it is
not stored and cannot be shown again. Run "grokproxy keys SUBCOMMAND -h"
for the flags of each.
`

func keysCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return exitError{code: 2}
	}
	switch args[0] {
	case "create":
		return keysCreate(args[1:], stdout, stderr)
	case "list":
		return keysList(args[1:], stdout, stderr)
	case "revoke":
		return keysRevoke(args[1:], stdout, stderr)
	case "rotate":
		return keysRotate(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, keysUsage)
		return nil
	}
	fmt.Fprintf(stderr, "grokproxy keys: unknown subcommand %q\n\n%s", args[0], keysUsage)
	return exitError{code: 2}
}

// keyJSON is a key as the commands print it, without its hash.
func keyJSON(k store.APIKey) map[string]any {
	m := map[string]any{"id": k.ID, "user_id": k.UserID, "name": k.Name, "prefix": k.Prefix,
		"created_at": k.CreatedAt, "last_used_at": nil, "expires_at": nil, "revoked_at": nil}
	for field, t := range map[string]time.Time{"last_used_at": k.LastUsedAt, "expires_at": k.ExpiresAt, "revoked_at": k.RevokedAt} {
		if !t.IsZero() {
			m[field] = t
		}
	}
	if k.RotatedFrom != "" {
		m["rotated_from"] = k.RotatedFrom
	}
	return m
}

// printNewKey prints the key's details to stderr and its text alone on
// stdout, so "grokproxy keys create … > file" keeps just the text.
func printNewKey(stdout, stderr io.Writer, k store.APIKey, text string) error {
	details, err := json.Marshal(keyJSON(k))
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s\nThe key text follows; it is shown only this once.\n", details)
	_, err = fmt.Fprintln(stdout, text)
	return err
}

const keysCreateUsage = "Usage: grokproxy keys create -user ID [-name NAME] [-expires WHEN] [-config FILE]\n\nCreates an API key for a user and prints its text once.\n\nFlags:\n"

func keysCreate(args []string, stdout, stderr io.Writer) error {
	var help bool
	fs := newFlags("keys create", keysCreateUsage, stdout, stderr, &help)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	userID := fs.String("user", "", "id of the user who owns the key (required)")
	name := fs.String("name", "", "label of the key, at most 200 characters")
	expires := fs.String("expires", "", `when the key stops working: an RFC 3339 time, a Go duration from now such as 720h, or "never" (default)`)
	if pos, err := parseFlags(fs, args, &help); err != nil {
		return err
	} else if pos != "" {
		return fmt.Errorf("unexpected argument %q", pos)
	}
	if *userID == "" {
		return errors.New("-user is required")
	}
	if len(*name) > 200 {
		return errors.New("-name: must be at most 200 characters")
	}
	at, err := parseExpiry(*expires, time.Now())
	if err != nil {
		return err
	}
	acc, err := openAccounts(*configPath, stderr)
	if err != nil {
		return err
	}
	defer acc.Close()
	k, text, err := acc.auth.CreateKey(context.Background(), *userID, *name, at)
	if err != nil {
		return err
	}
	return printNewKey(stdout, stderr, k, text)
}

const keysListUsage = "Usage: grokproxy keys list -user ID [-json] [-config FILE]\n\nLists the keys of a user, without their text.\n\nFlags:\n"

func keysList(args []string, stdout, stderr io.Writer) error {
	var help bool
	fs := newFlags("keys list", keysListUsage, stdout, stderr, &help)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	userID := fs.String("user", "", "id of the user whose keys to list (required)")
	asJSON := fs.Bool("json", false, "print JSON, one object per key, instead of a table")
	if pos, err := parseFlags(fs, args, &help); err != nil {
		return err
	} else if pos != "" {
		return fmt.Errorf("unexpected argument %q", pos)
	}
	if *userID == "" {
		return errors.New("-user is required")
	}
	acc, err := openAccounts(*configPath, stderr)
	if err != nil {
		return err
	}
	defer acc.Close()
	ctx := context.Background()
	if _, err := acc.st.User(ctx, *userID); err != nil {
		return fmt.Errorf("find user %q: %w", *userID, err)
	}
	keys, err := acc.st.APIKeys(ctx, *userID)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, k := range keys {
			if err := enc.Encode(keyJSON(k)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tCREATED\tLAST USED\tEXPIRES\tREVOKED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, timeText(k.CreatedAt),
			timeText(k.LastUsedAt), timeText(k.ExpiresAt), timeText(k.RevokedAt))
	}
	return tw.Flush()
}

const keysRevokeUsage = "Usage: grokproxy keys revoke KEY_ID [-config FILE]\n\nRevokes a key. Running replicas reject it within a second.\n\nFlags:\n"

func keysRevoke(args []string, stdout, stderr io.Writer) error {
	var help bool
	fs := newFlags("keys revoke", keysRevokeUsage, stdout, stderr, &help)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	id, err := parseFlags(fs, args, &help)
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("the key ID is required")
	}
	acc, err := openAccounts(*configPath, stderr)
	if err != nil {
		return err
	}
	defer acc.Close()
	if err := acc.auth.RevokeKey(context.Background(), id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked key %s\n", id)
	return nil
}

const keysRotateUsage = "Usage: grokproxy keys rotate KEY_ID [-grace DURATION] [-request-id ID] [-config FILE]\n\nMints a key that replaces KEY_ID and prints its text once. The old key\nkeeps working for the grace period.\n\nFlags:\n"

func keysRotate(args []string, stdout, stderr io.Writer) error {
	var help bool
	fs := newFlags("keys rotate", keysRotateUsage, stdout, stderr, &help)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	grace := fs.Duration("grace", time.Hour, "how long the old key keeps working, a Go duration (0: ends at once)")
	requestID := fs.String("request-id", "", "makes a retried rotation return the first one's key instead of minting another")
	id, err := parseFlags(fs, args, &help)
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("the key ID is required")
	}
	if *grace < 0 || *grace > 30*24*time.Hour {
		return fmt.Errorf("-grace: %v is out of range 0-720h", *grace)
	}
	acc, err := openAccounts(*configPath, stderr)
	if err != nil {
		return err
	}
	defer acc.Close()
	k, text, err := acc.auth.RotateKey(context.Background(), id, *requestID, *grace)
	if err != nil {
		return err
	}
	if text == "" {
		// A repeat of an earlier rotation: its text was shown then.
		return json.NewEncoder(stdout).Encode(keyJSON(k))
	}
	return printNewKey(stdout, stderr, k, text)
}
