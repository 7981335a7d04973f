// Command run runs the overhead benchmark. It runs every scenario against
// every system in turn: the emulator called directly, a bare reverse
// proxy, a JSON relay, and the gateway on the xai and on the grok
// provider. It measures each run from outside the processes and writes
// the results as a Markdown page. bench/run.sh builds the binaries and calls it; see
// docs/benchmarks.md for how to read the page.
//
// Each run starts a fresh emulator and a fresh system under test, so that
// peak memory is the run's own. Everything listens on 127.0.0.1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// options are the command-line flags.
type options struct {
	bin         string
	out         string
	database    string
	redis       string
	duration    time.Duration
	warmup      time.Duration
	slowClients int
	// slowGrokClients is the client count of the Grok web slow-stream run.
	slowGrokClients int
	slowPace        time.Duration
	slowRead        time.Duration
	slowRamp        time.Duration
	sessions        int
	profileDir      string
	goBench         string
	findings        string
	only            string
	systems         string
	note            string
	loadBefore      string
	// gatewayEnv holds extra NAME=value settings of every gateway run.
	gatewayEnv string
	// rounds is the number of runs of each system in the scenarios other
	// than the slow streams.
	rounds int
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bench/bin", "directory of the built binaries: gateway, baseline, load, xai-emulator, grokweb-emulator")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "Markdown file to write")
	flag.StringVar(&o.database, "database", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL; each gateway gets a fresh schema in it")
	flag.StringVar(&o.redis, "redis", "redis://127.0.0.1:6379/15", "REDIS_URL of the one gateway run with Redis (empty: skip that run)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each run, a Go duration")
	flag.IntVar(&o.rounds, "rounds", 3, "runs of each system in every scenario but the slow streams, alternating the systems; the page shows the medians")
	flag.StringVar(&o.gatewayEnv, "gateway-env", "", "space-separated NAME=value settings added to every gateway run, to compare settings (they win over the page's; the page names them)")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured time at the start of each run, a Go duration")
	flag.IntVar(&o.slowClients, "slow-clients", 10000, "concurrent clients of the slow-stream scenario")
	flag.IntVar(&o.slowGrokClients, "slow-grok-clients", 10000, "concurrent clients of the Grok web slow-stream scenario")
	flag.DurationVar(&o.slowPace, "slow-pace", time.Second, "pause between the emulators' tokens in the slow-stream scenario, a Go duration")
	flag.DurationVar(&o.slowRead, "slow-read", 500*time.Millisecond, "pause of each slow client after each event, a Go duration")
	flag.DurationVar(&o.slowRamp, "slow-ramp", 8*time.Second, "time over which the slow clients connect, a Go duration")
	flag.IntVar(&o.sessions, "sessions", 64, "upstream accounts of each emulator, all added to the gateway as sessions")
	flag.StringVar(&o.profileDir, "profile", "", "directory for CPU and allocation profiles of the gateway's 256-client runs and a heap profile with every slow stream open (empty: none)")
	flag.StringVar(&o.goBench, "go-bench", "", "file with the output of the Go benchmarks, quoted on the page")
	flag.StringVar(&o.findings, "findings", "", "Markdown file of dated findings, quoted on the page after the floors")
	flag.StringVar(&o.only, "only", "", "comma-separated scenario names to run (empty: all)")
	flag.StringVar(&o.systems, "systems", "", "comma-separated systems to run: direct, proxy, relay, gateway, gateway-grok, gateway-redis (empty: all)")
	flag.StringVar(&o.note, "note", "", "sentence about the machine's load, printed on the page")
	flag.StringVar(&o.loadBefore, "load-before", "", "load average of the machine before the run, for the page (empty: read when the scenarios start)")
	checkDB := flag.String("check-database", "", "only check that this PostgreSQL URL accepts a connection, and exit 0 if it does")
	flag.Parse()
	if *checkDB != "" {
		if err := ping(context.Background(), *checkDB); err != nil {
			fmt.Fprintln(os.Stderr, "run:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	env, err := newEnvironment(ctx, o)
	if err != nil {
		return err
	}
	defer env.close()
	began := time.Now()
	var results []measurement
	for _, sc := range scenarios(o) {
		if o.only != "" && !contains(o.only, sc.name) {
			continue
		}
		// Every round runs each system once, in turn, so that a change in
		// the machine's speed during the scenario touches all of them.
		rounds := o.rounds
		if sc.slow {
			rounds = 1
		}
		var systems []string
		runs := map[string][]measurement{}
		for round := range max(1, rounds) {
			for _, sys := range sc.systems {
				if o.systems != "" && !contains(o.systems, sys) {
					continue
				}
				if round == 0 {
					systems = append(systems, sys)
				}
				fmt.Fprintf(os.Stderr, "%s  %-12s %-14s ", time.Now().Format("15:04:05"), sc.name, sys)
				m := env.measure(ctx, sc, sys)
				fmt.Fprintln(os.Stderr, m.summary())
				runs[sys] = append(runs[sys], m)
			}
		}
		for _, sys := range systems {
			results = append(results, median(runs[sys]))
		}
	}
	page := report{opts: o, began: began, took: time.Since(began), results: results, machine: describeMachine(),
		goBench: readOptional(o.goBench), findings: readOptional(o.findings), profiles: env.profiles}
	return os.WriteFile(o.out, []byte(page.markdown()), 0o644)
}

func contains(list, name string) bool {
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == name {
			return true
		}
	}
	return false
}

func readOptional(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}
