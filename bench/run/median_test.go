package main

import (
	"errors"
	"math"
	"testing"
)

func TestMedianOfRounds(t *testing.T) {
	rounds := []measurement{
		{cpuSystem: 1, load: loadResult{RPS: 10, P50: 300, Total: 1000, Errors: 1}, peakRSS: 40},
		{cpuSystem: 6, load: loadResult{RPS: 30, P50: 100, Total: 2000}, peakRSS: 70},
		{cpuSystem: 6, load: loadResult{RPS: 20, P50: 200, Total: 3000, Cut: 2}, peakRSS: 50},
	}
	m := median(rounds)
	if m.load.RPS != 20 || m.load.P50 != 200 {
		t.Errorf("rps, p50 = %v, %v; want the medians 20, 200", m.load.RPS, m.load.P50)
	}
	// CPU per 1,000 requests: 1, 3 and 2 seconds.
	if got := m.perThousand(m.cpuSystem); math.Abs(got-2) > 1e-9 {
		t.Errorf("CPU per 1,000 = %v; want the median 2", got)
	}
	if m.peakRSS != 70 {
		t.Errorf("peak RSS = %d; want the largest, 70", m.peakRSS)
	}
	if m.load.Errors != 1 || m.load.Cut != 2 {
		t.Errorf("errors, cut = %d, %d; want the sums 1, 2", m.load.Errors, m.load.Cut)
	}
	if m.rounds != 3 || m.err != nil {
		t.Errorf("rounds, err = %d, %v; want 3, nil", m.rounds, m.err)
	}

	failed := append(rounds[:2:2], measurement{err: errors.New("gateway did not start")})
	if m := median(failed); m.err == nil || m.rounds != 2 {
		t.Errorf("with a failed round: rounds, err = %d, %v; want 2 and the error", m.rounds, m.err)
	}
	if m := median([]measurement{rounds[1]}); m.load.RPS != 30 || m.load.Total != 2000 {
		t.Errorf("one round: rps, total = %v, %d; want it unchanged", m.load.RPS, m.load.Total)
	}
}
