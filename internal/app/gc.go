package app

import (
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/gctune"
)

// TuneGC spaces out garbage collections by GC_HEADROOM_MB while the live
// heap is small (see package gctune), and returns the function that stops
// it. A GOGC environment variable is the operator's own choice and turns
// the tuner off. It changes the whole process, so a program calls it
// once, beside its App.
func TuneGC(cfg config.Config, log *slog.Logger) (stop func()) {
	if cfg.GCHeadroomMB == 0 {
		return func() {}
	}
	if v, ok := os.LookupEnv("GOGC"); ok {
		log.Info("GOGC is set, so GC_HEADROOM_MB is not applied", "gogc", v)
		return func() {}
	}
	// Without GOGC the runtime's percent is 100. Reading it back keeps a
	// value that the program set earlier.
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	t := gctune.Start(uint64(cfg.GCHeadroomMB)<<20, base)
	return t.Stop
}
