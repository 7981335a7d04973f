package pool

import "sync/atomic"

// window holds the last few outcomes of a series as failed or not.
type window struct {
	failed   []bool
	next     int // index the next outcome is written to
	n        int // outcomes held, at most len(failed)
	failures int // failed outcomes held
}

func newWindow(size int) window {
	return window{failed: make([]bool, max(1, size))}
}

func (w *window) add(failed bool) {
	if w.n == len(w.failed) {
		if w.failed[w.next] {
			w.failures--
		}
	} else {
		w.n++
	}
	w.failed[w.next] = failed
	if failed {
		w.failures++
	}
	w.next = (w.next + 1) % len(w.failed)
}

// rate returns the share of failed outcomes, 0 when empty.
func (w *window) rate() float64 {
	if w.n == 0 {
		return 0
	}
	return float64(w.failures) / float64(w.n)
}

func (w *window) reset() {
	clear(w.failed)
	w.next, w.n, w.failures = 0, 0, 0
}

// Slot values of a callWindow.
const (
	slotEmpty uint32 = iota
	slotPassed
	slotFailed
)

// callWindow holds the last few calls through a circuit as failed or not.
// It is safe for concurrent use without a lock: a call claims the next
// slot with an atomic counter and swaps its result in, and the counts
// follow each swap. Once concurrent adds end, n and failures are exact;
// while they run, a reader may see a count one call behind.
type callWindow struct {
	slots    []atomic.Uint32
	next     atomic.Uint64 // calls added so far; the next slot is next % len(slots)
	n        atomic.Int64  // slots holding a call
	failures atomic.Int64  // slots holding a failed call
}

func newCallWindow(size int) callWindow {
	return callWindow{slots: make([]atomic.Uint32, max(1, size))}
}

func (w *callWindow) add(failed bool) {
	v := slotPassed
	if failed {
		v = slotFailed
	}
	i := (w.next.Add(1) - 1) % uint64(len(w.slots))
	w.account(w.slots[i].Swap(v), v)
}

// account moves the counts from a slot's old value to its new one. It
// lowers failures before it touches n and raises them after, so a reader
// never sees more failures than calls.
func (w *callWindow) account(old, cur uint32) {
	if old == slotFailed && cur != slotFailed {
		w.failures.Add(-1)
	}
	switch {
	case old == slotEmpty && cur != slotEmpty:
		w.n.Add(1)
	case old != slotEmpty && cur == slotEmpty:
		w.n.Add(-1)
	}
	if cur == slotFailed && old != slotFailed {
		w.failures.Add(1)
	}
}

// over reports whether the window holds at least half its size in calls
// and more than threshold (0-1) of them failed.
func (w *callWindow) over(threshold float64) bool {
	n := w.n.Load()
	if n < int64(max(1, len(w.slots)/2)) {
		return false
	}
	return float64(w.failures.Load())/float64(n) > threshold
}

func (w *callWindow) reset() {
	for i := range w.slots {
		w.account(w.slots[i].Swap(slotEmpty), slotEmpty)
	}
}
