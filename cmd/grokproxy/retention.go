package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/grokproxy/grokproxy/internal/retention"
)

func init() {
	commands["retention"] = command{summary: "run the retention job once", run: retentionCmd}
}

const retentionUsage = `Usage:
  grokproxy retention run [-config FILE]

Deletes generations older than RETENTION_GENERATIONS_DAYS (default 90) and
expired or revoked sessions older than RETENTION_DEAD_SESSIONS_DAYS
(default 7) in bounded batches, then prints what it deleted. serve runs
the same job every RETENTION_INTERVAL; on PostgreSQL a lock keeps it to
one runner at a time, and this command fails while another holds it.
`

func retentionCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, retentionUsage)
		return exitError{code: 2}
	}
	switch args[0] {
	case "run":
		return retentionRun(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, retentionUsage)
		return nil
	}
	fmt.Fprintf(stderr, "grokproxy retention: unknown subcommand %q\n\n%s", args[0], retentionUsage)
	return exitError{code: 2}
}

func retentionRun(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("retention run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML settings file; environment variables override it")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), retentionUsage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, st, err := loadStore(*configPath, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	job := retention.FromConfig(cfg, st, "cli", nil)
	res, err := job.RunOnce(context.Background())
	if errors.Is(err, retention.ErrLocked) {
		return errors.New("another replica or process is running the retention job; try again later")
	}
	fmt.Fprintf(stdout, "deleted %d generations and %d sessions\n", res.Generations, len(res.Sessions))
	for _, id := range res.Sessions {
		fmt.Fprintf(stdout, "  session %s\n", id)
	}
	return err
}
