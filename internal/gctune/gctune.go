// Package gctune spaces out garbage collections while the live heap is
// small.
//
// Go starts a collection when the heap has grown by GOGC percent of the
// live heap, and at the least once 4 MiB × GOGC/100 are in use. A gateway's
// live heap is a few MiB, so with the default GOGC of 100 it collects after
// every few MiB of allocation, a few hundred requests, and each cycle scans
// the whole live heap again. Headroom raises GOGC after each cycle so that
// at least a fixed number of bytes can be allocated before the next one.
// As the live heap grows, the percent falls back to the base, so the extra
// memory is bounded by the headroom.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// heapMinimum is the runtime's smallest heap goal at GOGC=100.
const heapMinimum = 4 << 20

// Tuner adjusts GOGC after every garbage collection. Stop ends it.
type Tuner struct {
	headroom uint64
	base     int
	percent  atomic.Int64 // the GOGC set last
	stopped  atomic.Bool
	sample   []metrics.Sample
}

// Start begins adjusting GOGC to keep headroom bytes between collections,
// never below base percent. It returns nil, and changes nothing, when
// headroom is 0 or base is negative (collection off).
func Start(headroom uint64, base int) *Tuner {
	if headroom == 0 || base < 0 {
		return nil
	}
	t := &Tuner{headroom: headroom, base: base,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.percent.Store(int64(base))
	t.adjust()
	t.arm()
	return t
}

// Percent returns the GOGC the tuner set last.
func (t *Tuner) Percent() int { return int(t.percent.Load()) }

// Stop restores the base percent and stops adjusting.
func (t *Tuner) Stop() {
	if t == nil || t.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(t.base)
	t.percent.Store(int64(t.base))
}

// sentinel is dropped at once, so its finalizer runs after the next
// collection. It holds a pointer so that it is not a tiny allocation,
// whose finalizer may never run.
type sentinel struct{ t *Tuner }

func (t *Tuner) arm() {
	runtime.SetFinalizer(&sentinel{t}, func(s *sentinel) {
		if s.t.stopped.Load() {
			return
		}
		s.t.adjust()
		s.t.arm()
	})
}

// adjust sets GOGC from the live heap that the last collection marked.
func (t *Tuner) adjust() {
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	p := Percent(t.sample[0].Value.Uint64(), t.headroom, t.base)
	// A change of less than a tenth is not worth the call, unless it
	// returns to the base.
	if old := int(t.percent.Load()); p == old || p != t.base && p*10 >= old*9 && p*10 <= old*11 {
		return
	}
	if t.stopped.Load() {
		return
	}
	debug.SetGCPercent(p)
	t.percent.Store(int64(p))
}

// Percent returns the GOGC whose heap goal is live+headroom bytes, or
// base when base already leaves that much. The runtime's goal is the
// larger of live×(1+GOGC/100) and heapMinimum×GOGC/100, so both bounds
// are solved for.
func Percent(live, headroom uint64, base int) int {
	if live == 0 {
		live = 1
	}
	goal := live + headroom
	byLive := headroom * 100 / live
	byMinimum := goal * 100 / heapMinimum
	p := min(byLive, byMinimum)
	if p <= uint64(base) {
		return base
	}
	// Cap the percent for a near-empty heap. The heap goal stays within
	// goal either way.
	return int(min(p, 1_000_000))
}
