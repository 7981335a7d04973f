package app

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/telemetry"
)

// circuitHealth reports the circuit breaker of each served provider. It is
// down when every provider's circuit is open, since every request then
// fails fast with a 503, and degraded while any is open or half-open.
type circuitHealth struct {
	pool      *pool.Pool
	providers []string
}

func (h circuitHealth) Check(ctx context.Context) (string, map[string]any) {
	states := make(map[string]any, len(h.providers))
	open := 0
	status := "ok"
	for _, p := range h.providers {
		st := h.pool.CircuitState(p)
		states[p] = st
		if st == pool.CircuitOpen {
			open++
		}
		if st != pool.CircuitClosed {
			status = "degraded"
		}
	}
	if len(h.providers) > 0 && open == len(h.providers) {
		status = "down"
	}
	return status, states
}

// readiness reports whether the gateway is ready for /readyz. It is ready
// once New has applied the migrations (it listens only after that), while
// the store responds to a ping, and, when requireSession is set, while at
// least one session is healthy. A
// healthy session that rests after a 429 still counts: readiness that
// followed rate limits would take every replica out of the load balancer
// at once, and clients would get connection errors instead of a 429.
func readiness(st store.Store, p *pool.Pool, requireSession bool) func(context.Context) (bool, string) {
	return func(ctx context.Context) (bool, string) {
		if err := st.Ping(ctx); err != nil {
			return false, "store unreachable"
		}
		if requireSession && p.Counts()[store.StatusHealthy] == 0 {
			return false, "no healthy session"
		}
		return true, ""
	}
}

// startTelemetry turns on error reports and tracing when configured. Error
// log records of every part built after it also go to Sentry.
func (a *App) startTelemetry() error {
	tel, err := telemetry.New(telemetry.Config{
		SentryDSN:    a.Config.SentryDSN,
		OTLPEndpoint: a.Config.OTLPEndpoint,
		Environment:  a.Config.SentryEnvironment,
		Version:      buildVersion(),
	})
	if err != nil {
		return err
	}
	a.Telemetry = tel
	if tel.Reporting() {
		a.Log = slog.New(tel.LogHandler(a.Log.Handler()))
	}
	return nil
}

// buildVersion returns the module version the binary was built from.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
