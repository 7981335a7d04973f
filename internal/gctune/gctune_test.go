package gctune

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

const mib = 1 << 20

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live, headroom uint64
		base, want     int
	}{
		// Below 4 MiB the runtime's minimum heap goal binds: 4 MiB × 8.5 = 34 MiB.
		{live: 2 * mib, headroom: 32 * mib, base: 100, want: 850},
		// Above it the live heap does: 16 MiB × (1 + 2) = 48 MiB.
		{live: 16 * mib, headroom: 32 * mib, base: 100, want: 200},
		// A live heap larger than the headroom keeps the base.
		{live: 40 * mib, headroom: 32 * mib, base: 100, want: 100},
		{live: 16 * mib, headroom: 32 * mib, base: 300, want: 300},
		{live: 0, headroom: 32 * mib, base: 100, want: 800},
	} {
		got := Percent(c.live, c.headroom, c.base)
		if got != c.want {
			t.Errorf("Percent(%d MiB, %d MiB, %d) = %d, want %d", c.live/mib, c.headroom/mib, c.base, got, c.want)
		}
		if got > c.base {
			// The heap goal the runtime derives from got stays within live+headroom.
			goal := max(c.live*uint64(100+got)/100, heapMinimum*uint64(got)/100)
			if goal > c.live+c.headroom {
				t.Errorf("Percent(%d MiB, %d MiB) = %d gives a heap goal of %d MiB, above %d MiB",
					c.live/mib, c.headroom/mib, got, goal/mib, (c.live+c.headroom)/mib)
			}
		}
	}
}

// gogc reads the GOGC the runtime uses now.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// waitPercent collects garbage until the tuner has set a GOGC that ok
// accepts, and returns it.
func waitPercent(t *testing.T, tu *Tuner, ok func(int) bool) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		p := tu.Percent()
		if ok(p) && gogc() == p {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("tuner set GOGC %d (runtime has %d), not the value expected", p, gogc())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTunerFollowsLiveHeap(t *testing.T) {
	tu := Start(64*mib, 100)
	if tu == nil {
		t.Fatal("Start returned nil")
	}
	defer tu.Stop()

	// A test binary's live heap is a few MiB, so the headroom raises GOGC
	// well above the base.
	waitPercent(t, tu, func(p int) bool { return p >= 400 })

	// With a live heap above the headroom the percent falls back to the base.
	ballast := make([]*[mib]byte, 96)
	for i := range ballast {
		ballast[i] = new([mib]byte)
	}
	waitPercent(t, tu, func(p int) bool { return p == 100 })
	runtime.KeepAlive(ballast)
	ballast = nil

	waitPercent(t, tu, func(p int) bool { return p >= 400 })

	tu.Stop()
	if got := gogc(); got != 100 {
		t.Errorf("GOGC after Stop = %d, want the base 100", got)
	}
}

func TestStartOff(t *testing.T) {
	if tu := Start(0, 100); tu != nil {
		t.Error("Start with no headroom returned a tuner")
	}
	if tu := Start(32*mib, -1); tu != nil {
		t.Error("Start with collection off returned a tuner")
	}
	var tu *Tuner
	tu.Stop() // a nil tuner stops without a panic
}
