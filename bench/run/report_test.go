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
