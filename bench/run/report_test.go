package main

import (
	"strings"
	"testing"
)

func result(scenario, system string, rps, p50, cpu float64, total int) measurement {
	return measurement{scenario: scenario0(scenario), system: system, cpuSystem: cpu,
		load: loadResult{RPS: rps, P50: p50, Total: total, Clients: 256}, peakRSS: 50 << 20}
}

func scenario0(name string) scenario { return scenario{name: name, title: name} }

func TestFloors(t *testing.T) {
	r := report{results: []measurement{
		result("single", sysDirect, 1000, 150, 1, 1000),
		result("single", sysGateway, 800, 300, 1, 1000), // 150 µs added
		result("chat-32", sysRelay, 4000, 5000, 1, 1000),
		result("chat-32", sysGateway, 2000, 9000, 2, 1000), // 2x CPU, 0.5x rps
	}, goBench: "BenchmarkBatchInsert/postgres-2  20  24239704 ns/op  20627 rows/s  5383441 B/op\n"}
	got := map[string]floor{}
	for _, f := range r.floors() {
		if f.known {
			got[f.name+" "+f.got] = f
		}
	}
	want := map[string]bool{
		"CPU per request vs JSON relay, non-streamed 2.00× (chat-32)":     false,
		"requests per second vs JSON relay, non-streamed 0.50× (chat-32)": false,
		"added p50 latency at one client 150 µs":                          true,
		"audit inserts on PostgreSQL 20627 rows/s":                        true,
	}
	for k, met := range want {
		f, ok := got[k]
		if !ok {
			t.Errorf("no floor %q among %v", k, got)
			continue
		}
		if f.met != met {
			t.Errorf("%q met = %v; want %v", k, f.met, met)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d floors measured; want %d: %v", len(got), len(want), got)
	}
	page := r.markdown()
	for _, s := range []string{"| CPU per request vs JSON relay, non-streamed | at most 1.5× | 2.00× (chat-32) | **no** |", "### chat-32"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
}

func TestFloorsFromRoundRatios(t *testing.T) {
	rounds := func(system string, cpus ...float64) measurement {
		var runs []measurement
		for _, c := range cpus {
			runs = append(runs, result("chat-32", system, 1000, 5000, c, 1000))
		}
		return median(runs)
	}
	// Per-round ratios 2.0, 1.5 and 1.4: the median is 1.5, while the
	// ratio of the two medians would be 2/1 = 2.
	r := report{results: []measurement{rounds(sysRelay, 1, 2, 1), rounds(sysGateway, 2, 3, 1.4)}}
	for _, f := range r.floors() {
		if !f.known || f.name != "CPU per request vs JSON relay, non-streamed" {
			continue
		}
		if want := "1.50× (chat-32; rounds 2.00, 1.50, 1.40)"; f.got != want {
			t.Errorf("got %q; want %q", f.got, want)
		}
		if !f.met {
			t.Error("a median ratio of 1.5 does not meet the floor of at most 1.5")
		}
		return
	}
	t.Fatal("no CPU floor for chat-32")
}
