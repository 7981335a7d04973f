package main

import (
	"os"
	"testing"
	"time"
)

func TestStatSecondsOwnProcess(t *testing.T) {
	pid := os.Getpid()
	before := cpuSeconds(pid)
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
	}
	after := cpuSeconds(pid)
	if after-before < 0.1 {
		t.Errorf("CPU time grew by %.2fs over 300ms of busy work; want at least 0.1s", after-before)
	}
	if withChildren := statSeconds(pid, true); withChildren < after {
		t.Errorf("time with children %.2fs is below own time %.2fs", withChildren, after)
	}
	if got := cpuSeconds(-1); got != 0 {
		t.Errorf("cpuSeconds of a missing process = %v; want 0", got)
	}
}

func TestPeakRSSOwnProcess(t *testing.T) {
	if got := peakRSSBytes(os.Getpid()); got < 1<<20 {
		t.Errorf("peak RSS = %d bytes; want at least 1 MiB", got)
	}
}

func TestCPUSpentIgnoresStoppedServers(t *testing.T) {
	before := map[int]float64{10: 5, 11: 2, 12: 40}
	after := map[int]float64{10: 6.5, 11: 2, 13: 0.25} // 12 stopped, 13 started
	if got := cpuSpent(before, after); got != 1.75 {
		t.Errorf("cpuSpent = %v; want 1.75", got)
	}
}
