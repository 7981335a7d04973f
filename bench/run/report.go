package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine describes where the run happened.
type machine struct {
	cpus              int
	model, memory     string
	kernel, goVersion string
	loadBefore        string
}

func describeMachine() machine {
	m := machine{cpus: runtime.NumCPU(), goVersion: runtime.Version()}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		m.goVersion = strings.TrimSpace(string(out))
	}
	m.model = procField("/proc/cpuinfo", "model name")
	m.memory = procField("/proc/meminfo", "MemTotal")
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	m.loadBefore = loadAverage()
	return m
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// procField returns the value of the first "name: value" line of a /proc
// file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// report renders the results page.
type report struct {
	opts     options
	began    time.Time
	took     time.Duration
	machine  machine
	results  []measurement
	goBench  string
	findings string
	profiles []profile
}

func (r report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Benchmarks\n\n")
	w("Overhead of the gateway against an emulated upstream, side by side with a bare\n")
	w("reverse proxy and a plain JSON relay, measured in one run on one machine.\n")
	w("Re-run it with `bench/run.sh` (see [How to re-run](#how-to-re-run)); the\n")
	w("machine is shared, so compare ratios within one run rather than absolute\n")
	w("numbers across runs.\n\n")
	r.writeMachine(w)
	r.writeFloors(w)
	if r.findings != "" {
		w("%s\n", strings.TrimSpace(r.findings))
		w("\n")
	}
	r.writeTables(w)
	r.writeHeap(w)
	r.writeGoBench(w)
	r.writeProfiles(w)
	r.writeMethod(w)
	return b.String()
}

func (r report) writeMachine(w func(string, ...any)) {
	m := r.machine
	w("## Machine and settings\n\n")
	w("| item | value |\n| --- | --- |\n")
	w("| date | %s (run took %s) |\n", r.began.UTC().Format("2006-01-02 15:04 MST"), r.took.Round(time.Second))
	w("| CPU | %d × %s |\n", m.cpus, m.model)
	w("| memory | %s |\n", m.memory)
	w("| kernel | Linux %s |\n", m.kernel)
	w("| Go | %s |\n", m.goVersion)
	if r.opts.loadBefore != "" {
		w("| load average before the run | %s |\n", r.opts.loadBefore)
	} else {
		w("| load average when the scenarios started | %s |\n", m.loadBefore)
	}
	if r.opts.note != "" {
		w("| machine load | %s |\n", r.opts.note)
	}
	w("| measured time per run | %s after a %s warm-up |\n", r.opts.duration, r.opts.warmup)
	if r.opts.rounds > 1 {
		w("| rounds | %d per scenario (1 for the slow streams), each running every system in turn; each figure is the median over the rounds, peak memory the largest, errors the sum |\n", r.opts.rounds)
	}
	w("| slow-stream scenarios | %d clients (%d on Grok web) connecting over %s, one stream each; emulator pause %s per token, client pause %s per event; the xai systems speak HTTP/2 without TLS to the emulator (gateway XAI_HTTP2_CLEARTEXT, baselines -h2c), the Grok web client HTTP/1.1 |\n",
		r.opts.slowClients, r.opts.slowGrokClients, r.opts.slowRamp, r.opts.slowPace, r.opts.slowRead)
	w("| upstream | emulators with no delay (20 chunks per streamed response), %d accounts or keys, all sessions of the gateway |\n", r.opts.sessions)
	w("| gateway settings | key auth (a user key, bcrypt cost 12, cached after the first request); USER_RATE_LIMIT_PER_MINUTE and the user's limit 1,000,000; SESSION_RATE_LIMIT_PER_SECOND 1,000,000; SESSION_ROTATION_THRESHOLD 0; pool selection over all sessions; audit records to PostgreSQL on the same machine (STORE_CONTENT full); METRICS_ENABLED true; LOG_LEVEL info, JSON to a file; MAX_IN_FLIGHT raised for the slow streams; no REDIS_URL except in the redis-* scenarios; other settings at their defaults, among them GC_HEADROOM_MB 20 and LOG_FLUSH_INTERVAL 100ms |\n")
	if r.opts.gatewayEnv != "" {
		w("| settings added with -gateway-env | %s |\n", r.opts.gatewayEnv)
	}
	w("\n")
}

// find returns the measurement of a scenario and system.
func (r report) find(scenario, system string) (measurement, bool) {
	for _, m := range r.results {
		if m.scenario.name == scenario && m.system == system && m.err == nil {
			return m, true
		}
	}
	return measurement{}, false
}

// floor is one target of the page and how the run fared against it.
type floor struct {
	name, target, got string
	met, known        bool
}

func (r report) floors() []floor {
	var fs []floor
	ratio := func(name, target, scenario string, limit float64, atMost bool, value func(measurement) float64) {
		f := floor{name: name, target: target}
		gw, ok1 := r.find(scenario, sysGateway)
		rl, ok2 := r.find(scenario, sysRelay)
		if ok1 && ok2 && value(rl) > 0 {
			q := value(gw) / value(rl)
			f.known, f.got = true, fmt.Sprintf("%.2f× (%s)", q, scenario)
			// With rounds, the ratio is the median of each round's ratio:
			// the two systems ran one after the other in a round, so a
			// change in the machine's speed between rounds cancels out.
			if qs, ok := roundRatios(gw, rl, value); ok {
				q = middle(slices.Clone(qs))
				f.got = fmt.Sprintf("%.2f× (%s; rounds %s)", q, scenario, joinRatios(qs))
			}
			f.met = q >= limit
			if atMost {
				f.met = q <= limit
			}
		}
		fs = append(fs, f)
	}
	cpu := func(m measurement) float64 { return m.perThousand(m.cpuSystem) }
	rps := func(m measurement) float64 { return m.load.RPS }
	for _, sc := range []string{"chat-32", "chat-256"} {
		ratio("CPU per request vs JSON relay, non-streamed", "at most 1.5×", sc, 1.5, true, cpu)
		ratio("requests per second vs JSON relay, non-streamed", "at least 0.75×", sc, 0.75, false, rps)
	}
	for _, sc := range []string{"stream-32", "stream-256"} {
		ratio("CPU per request vs JSON relay, streamed", "at most 1.0×", sc, 1.0, true, cpu)
	}

	added := floor{name: "added p50 latency at one client", target: "under 200 µs"}
	if gw, ok := r.find("single", sysGateway); ok {
		if d, ok := r.find("single", sysDirect); ok {
			v := gw.load.P50 - d.load.P50
			added.known, added.met, added.got = true, v < 200, us(v)
		}
	}
	fs = append(fs, added)

	for _, sc := range []string{"chat-256", "stream-256"} {
		f := floor{name: "errors and cut streams at 256 clients", target: "zero"}
		if gw, ok := r.find(sc, sysGateway); ok {
			n := gw.load.Errors + gw.load.Cut
			f.known, f.met, f.got = true, n == 0, fmt.Sprintf("%d (%s)", n, sc)
		}
		fs = append(fs, f)
		f = floor{name: "peak memory (VmHWM) at 256 clients", target: "under 100 MiB"}
		if gw, ok := r.find(sc, sysGateway); ok {
			f.known, f.met, f.got = true, gw.peakRSS < 100<<20, fmt.Sprintf("%.1f MiB (%s)", float64(gw.peakRSS)/(1<<20), sc)
		}
		fs = append(fs, f)
	}

	heap := floor{name: "heap per idle stream", target: "under 20 KiB"}
	if gw, ok := r.find("slow-streams", sysGateway); ok && gw.heapStreams > 0 {
		v := gw.heapPerStream()
		heap.known, heap.met, heap.got = true, v < 20*1024, fmt.Sprintf("%.1f KiB at %d streams", v/1024, gw.load.Clients)
	}
	fs = append(fs, heap)

	audit := floor{name: "audit inserts on PostgreSQL", target: "at least 5,000 rows/s"}
	if v, ok := auditRowsPerSecond(r.goBench); ok {
		audit.known, audit.met, audit.got = true, v >= 5000, fmt.Sprintf("%.0f rows/s", v)
	}
	fs = append(fs, audit)
	return fs
}

// roundRatios returns value(gw)/value(rl) for each round, when both
// systems ran the same rounds without errors.
func roundRatios(gw, rl measurement, value func(measurement) float64) ([]float64, bool) {
	if len(gw.runs) < 2 || len(gw.runs) != len(rl.runs) {
		return nil, false
	}
	qs := make([]float64, len(gw.runs))
	for i := range gw.runs {
		g, r := gw.runs[i], rl.runs[i]
		if g.err != nil || r.err != nil || value(r) <= 0 {
			return nil, false
		}
		qs[i] = value(g) / value(r)
	}
	return qs, true
}

func joinRatios(qs []float64) string {
	parts := make([]string, len(qs))
	for i, q := range qs {
		parts[i] = fmt.Sprintf("%.2f", q)
	}
	return strings.Join(parts, ", ")
}

// auditRowsPerSecond reads the rows/s metric of the audit batch benchmark
// on PostgreSQL from the Go benchmark output.
func auditRowsPerSecond(out string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^BenchmarkBatchInsert/postgres\S*\s.*?([0-9.]+) rows/s`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

func (r report) writeFloors(w func(string, ...any)) {
	w("## Floors\n\n")
	w("Targets for the gateway (`xai` provider), as ratios within this run.\n\n")
	w("| target | floor | this run | met |\n| --- | --- | --- | --- |\n")
	for _, f := range r.floors() {
		got, met := "not measured", "—"
		if f.known {
			got = f.got
			met = "yes"
			if !f.met {
				met = "**no**"
			}
		}
		w("| %s | %s | %s | %s |\n", f.name, f.target, got, met)
	}
	w("\n")
}

func (r report) writeTables(w func(string, ...any)) {
	w("## Results\n\n")
	w("Latencies are client-side, from sending the request to reading the last\n")
	w("byte. *added p50* is the system's p50 minus the emulator's when called\n")
	w("directly in the same scenario. *TTFT* is the time to the first chunk that\n")
	w("carries text (the whole response when not streamed). *CPU/1k* is the\n")
	w("CPU seconds (user + system, from `/proc/PID/stat`) that the process spent\n")
	w("per 1,000 requests, read from the end of the warm-up to the end of the load\n")
	w("and divided by the requests measured. This leaves out start-up work such\n")
	w("as the first bcrypt check of the key. The slow-stream scenarios count the\n")
	w("whole run and every request. For *direct* it is\n")
	w("the emulator's own. *upstream CPU/1k* is the emulator's behind the system,\n")
	w("*PostgreSQL CPU/1k* the sum over every `postgres` process on the machine\n")
	w("(a server that stops during a run drops out of the sum).\n")
	w("*peak RSS* is VmHWM from `/proc/PID/status` of a process started for the run;\n")
	w("for *direct* it is the emulator's, which keeps a copy of every request it\n")
	w("receives for test assertions.\n\n")
	seen := map[string]bool{}
	for _, m := range r.results {
		if seen[m.scenario.name] {
			continue
		}
		seen[m.scenario.name] = true
		w("### %s\n\n", m.scenario.title)
		w("| system | req/s | p50 | p99 | max | added p50 | TTFT p50 | CPU/1k | upstream CPU/1k | PostgreSQL CPU/1k | peak RSS | errors / cut |\n")
		w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		direct, hasDirect := r.find(m.scenario.name, sysDirect)
		for _, x := range r.results {
			if x.scenario.name != m.scenario.name {
				continue
			}
			if x.err != nil {
				w("| %s | failed: %s | | | | | | | | | | |\n", x.system, strings.ReplaceAll(x.err.Error(), "|", "/"))
				continue
			}
			added := "—"
			if hasDirect && x.system != sysDirect {
				added = us(x.load.P50 - direct.load.P50)
			}
			upCPU := "—"
			if x.system != sysDirect {
				upCPU = fmt.Sprintf("%.3f s", x.perThousand(x.cpuUpstream))
			}
			w("| %s | %.0f | %s | %s | %s | %s | %s | %.3f s | %s | %.3f s | %.1f MiB | %d / %d |\n",
				x.system, x.load.RPS, us(x.load.P50), us(x.load.P99), us(x.load.Max), added, us(x.load.TTFT50),
				x.perThousand(x.cpuSystem), upCPU, x.perThousand(x.cpuPostgres), float64(x.peakRSS)/(1<<20),
				x.load.Errors, x.load.Cut)
		}
		for _, x := range r.results {
			if x.scenario.name == m.scenario.name && x.err == nil && x.load.FirstError != "" {
				w("\nFirst error of %s: `%s`\n", x.system, strings.ReplaceAll(x.load.FirstError, "`", "'"))
			}
		}
		w("\n")
	}
	r.writeTranslation(w)
}

// writeTranslation compares the gateway on grok with the gateway on xai.
func (r report) writeTranslation(w func(string, ...any)) {
	w("### What the Grok web protocol translation costs\n\n")
	w("The same client requests through the gateway, served by Grok web sessions\n")
	w("against the Grok web emulator rather than by xAI sessions.\n\n")
	w("| scenario | gateway CPU/1k (xai) | gateway CPU/1k (grok) | difference | p50 (xai) | p50 (grok) |\n")
	w("| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, sc := range []string{"single", "chat-32", "chat-256", "stream-32", "stream-256"} {
		x, ok1 := r.find(sc, sysGateway)
		g, ok2 := r.find(sc, sysGatewayGrok)
		if !ok1 || !ok2 {
			continue
		}
		cx, cg := x.perThousand(x.cpuSystem), g.perThousand(g.cpuSystem)
		w("| %s | %.3f s | %.3f s | %+.3f s | %s | %s |\n", sc, cx, cg, cg-cx, us(x.load.P50), us(g.load.P50))
	}
	w("\n")
}

func (r report) writeHeap(w func(string, ...any)) {
	w("## Heap per idle stream\n\n")
	w("(live heap with every slow client streaming − live heap idle) / clients;\n")
	w("both read after a forced collection on the gateway's debug listener.\n\n")
	w("| system | clients | idle heap | heap while streaming | per stream |\n| --- | ---: | ---: | ---: | ---: |\n")
	for _, m := range r.results {
		if !m.scenario.slow || !m.isGateway() || m.heapStreams == 0 {
			continue
		}
		w("| %s | %d | %.1f MiB | %.1f MiB | %.1f KiB |\n", m.system, m.load.Clients,
			float64(m.heapIdle)/(1<<20), float64(m.heapStreams)/(1<<20), m.heapPerStream()/1024)
	}
	w("\n")
}

func (r report) writeGoBench(w func(string, ...any)) {
	w("## Go benchmarks of the hot path\n\n")
	if r.goBench == "" {
		w("Not run (pass the output file with -go-bench).\n\n")
		return
	}
	w("The hot-path benchmarks that bench/run.sh runs with `go test -bench`\n")
	w("before the scenarios:\n\n```text\n%s```\n\n", r.goBench)
}

func (r report) writeProfiles(w func(string, ...any)) {
	w("## Profiles of the gateway\n\n")
	w("CPU and allocation profiles of the 256-client runs, and the heap in use\n")
	w("with every slow stream open, each listed by flat and by cumulative cost.\n\n")
	if len(r.profiles) == 0 {
		w("Not taken in this run; `bench/run.sh -profile DIR` takes them.\n\n")
		return
	}
	for _, p := range r.profiles {
		w("### %s, %s\n\n```text\n%s```\n\n", p.scenario, p.kind, trimTop(p.top))
	}
}

// trimTop drops the pprof header lines that name local files.
func trimTop(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") {
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func (r report) writeMethod(w func(string, ...any)) {
	w("## How to re-run\n\n")
	w("```sh\nbench/run.sh                 # everything, about 20 minutes on 2 cores\n")
	w("bench/run.sh -profile /tmp/prof   # also CPU and allocation profiles\n")
	w("bench/instructions.sh        # instructions per request, relay and gateway\n```\n\n")
	w("The script builds the binaries, raises the open-files limit, runs the Go\n")
	w("benchmarks once, then runs every scenario against every system in turn\n")
	w("(direct, proxy, relay, gateway, gateway-grok), in rounds, each run with a\n")
	w("freshly started emulator and system, and rewrites this page. See\n")
	w("bench/README.md.\n")
}
