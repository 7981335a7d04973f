package main

import (
	"errors"
	"slices"
)

// median combines the rounds of one system in one scenario into one
// measurement: each figure is the median over the rounds, except peak
// memory, the largest, and errors and cut streams, the sums. CPU is the
// median of the per-request figures, so the request count is set to 1,000
// and each CPU field to its median seconds per 1,000.
func median(rounds []measurement) measurement {
	if len(rounds) == 1 {
		return rounds[0]
	}
	rounds = slices.Clone(rounds)

	m := rounds[0]
	var errs []error
	ok := rounds[:0:0]
	for _, r := range rounds {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		m.err = errors.Join(errs...)
		return m
	}

	mid := func(f func(measurement) float64) float64 {
		vs := make([]float64, len(ok))
		for i, r := range ok {
			vs[i] = f(r)
		}
		return middle(vs)
	}

	m = ok[0]
	m.load.RPS = mid(func(r measurement) float64 { return r.load.RPS })
	m.load.P50 = mid(func(r measurement) float64 { return r.load.P50 })
	m.load.P99 = mid(func(r measurement) float64 { return r.load.P99 })
	m.load.Max = mid(func(r measurement) float64 { return r.load.Max })
	m.load.TTFT50 = mid(func(r measurement) float64 { return r.load.TTFT50 })
	m.load.TTFT99 = mid(func(r measurement) float64 { return r.load.TTFT99 })
	m.cpuSystem = mid(func(r measurement) float64 { return r.perThousand(r.cpuSystem) })
	m.cpuUpstream = mid(func(r measurement) float64 { return r.perThousand(r.cpuUpstream) })
	m.cpuPostgres = mid(func(r measurement) float64 { return r.perThousand(r.cpuPostgres) })
	m.load.Total, m.cpuRequests = 1000, 1000

	m.load.Errors, m.load.Cut = 0, 0
	for _, r := range ok {
		m.peakRSS = max(m.peakRSS, r.peakRSS)
		m.load.Errors += r.load.Errors
		m.load.Cut += r.load.Cut
		if m.load.FirstError == "" {
			m.load.FirstError = r.load.FirstError
		}
	}

	// A round that failed outright counts as an error of the whole.
	if len(errs) > 0 {
		m.err = errors.Join(errs...)
	}
	m.rounds = len(ok)
	m.runs = rounds
	return m
}

// middle returns the median of vs, which it sorts.
func middle(vs []float64) float64 {
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}
