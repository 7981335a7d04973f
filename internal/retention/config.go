package retention

import (
	"log/slog"
	"time"

	"github.com/grokproxy/grokproxy/internal/config"
)

// FromConfig returns the job that the RETENTION_* settings of cfg describe,
// run by actor (as the audit trail names it, e.g. "scheduler" or "cli").
func FromConfig(cfg config.Config, st Store, actor string, log *slog.Logger) *Job {
	return New(Config{
		GenerationsAge:  days(cfg.RetentionGenerationsDays),
		DeadSessionsAge: days(cfg.RetentionDeadSessionsDays),
		Interval:        cfg.RetentionInterval,
	}, st, actor, time.Now, log)
}

// days converts a setting in days to a keep period; 0 keeps forever.
func days(n int) time.Duration {
	if n <= 0 {
		return -1
	}
	return time.Duration(n) * 24 * time.Hour
}
