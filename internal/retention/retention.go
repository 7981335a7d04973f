// Package retention deletes records that have outlived their keep period:
// generations older than RETENTION_GENERATIONS_DAYS and expired or revoked
// sessions older than RETENTION_DEAD_SESSIONS_DAYS.
//
// Deletes run in bounded batches, each its own short statement, so the job
// never holds a table lock for long. A store lock keeps the job to one
// replica at a time; a replica that finds the lock taken skips the run.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// LockName is the store lock that one run holds.
const LockName = "retention"

// Defaults for the zero fields of Config.
const (
	DefaultGenerationsAge  = 90 * 24 * time.Hour
	DefaultDeadSessionsAge = 7 * 24 * time.Hour
	DefaultBatchSize       = 1000
	DefaultInterval        = time.Hour
)

// Store is the part of the store the job uses.
type Store interface {
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
	DeleteGenerationsBefore(ctx context.Context, t time.Time, limit int) (int64, error)
	DeleteDeadSessionsBefore(ctx context.Context, t time.Time, limit int) ([]string, error)
	AppendAuditEvent(ctx context.Context, e *store.AuditEvent) error
}

// Config sets the keep periods and pacing of a Job.
type Config struct {
	// GenerationsAge is how long generations are kept. Zero means 90 days;
	// a negative value keeps them forever.
	GenerationsAge time.Duration
	// DeadSessionsAge is how long expired and revoked sessions are kept
	// after they died. Zero means 7 days; a negative value keeps them.
	DeadSessionsAge time.Duration
	// BatchSize is the number of rows one delete statement removes. Zero
	// means 1000.
	BatchSize int
	// Pause is the wait between batches, which lets other writers in.
	// Zero means none.
	Pause time.Duration
	// Interval is the time between scheduled runs. Zero means 1h.
	Interval time.Duration
}

func (c Config) withDefaults() Config {
	if c.GenerationsAge == 0 {
		c.GenerationsAge = DefaultGenerationsAge
	}
	if c.DeadSessionsAge == 0 {
		c.DeadSessionsAge = DefaultDeadSessionsAge
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	return c
}

// Result is what one run deleted.
type Result struct {
	Generations int64    `json:"generations"`
	Sessions    []string `json:"sessions"` // ids of the deleted sessions
	// Skipped is true when another holder had the lock, so nothing ran.
	Skipped bool `json:"skipped"`
}

// ErrLocked is returned by RunOnce when another replica or process is
// running the job.
var ErrLocked = errors.New("retention job already running elsewhere")

// Job runs the retention deletes. It is safe for concurrent use; the lock
// lets one run through at a time.
type Job struct {
	st    Store
	cfg   Config
	now   func() time.Time
	log   *slog.Logger
	actor string // audit actor of the runs

	// OnSessionsDeleted, when set, is called with the ids of deleted
	// sessions, so that the caller can drop them from memory.
	OnSessionsDeleted func(ids []string)
}

// New returns a Job over st. actor names who runs it in the audit trail,
// e.g. "scheduler" or "cli". A nil now means time.Now and a nil log
// discards records.
func New(cfg Config, st Store, actor string, now func() time.Time, log *slog.Logger) *Job {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Job{st: st, cfg: cfg.withDefaults(), now: now, log: log, actor: actor}
}

// RunOnce takes the lock and deletes everything past its keep period. It
// returns ErrLocked, with Result.Skipped set, when the lock is taken. A
// run that deleted something leaves a "retention.run" audit event.
func (j *Job) RunOnce(ctx context.Context) (Result, error) {
	unlock, ok, err := j.st.TryLock(ctx, LockName)
	if err != nil {
		return Result{}, fmt.Errorf("retention: %w", err)
	}
	if !ok {
		return Result{Skipped: true}, ErrLocked
	}
	defer unlock()

	now := j.now()
	res := Result{Sessions: []string{}}
	if j.cfg.GenerationsAge > 0 {
		res.Generations, err = j.deleteGenerations(ctx, now.Add(-j.cfg.GenerationsAge))
		if err != nil {
			return res, err
		}
	}
	if j.cfg.DeadSessionsAge > 0 {
		res.Sessions, err = j.deleteSessions(ctx, now.Add(-j.cfg.DeadSessionsAge))
		if len(res.Sessions) > 0 && j.OnSessionsDeleted != nil {
			j.OnSessionsDeleted(res.Sessions)
		}
		if err != nil {
			return res, err
		}
	}
	if res.Generations == 0 && len(res.Sessions) == 0 {
		return res, nil
	}
	j.log.Info("retention deleted records", "generations", res.Generations,
		"sessions", len(res.Sessions))
	ev := &store.AuditEvent{Actor: j.actor, Action: "retention.run", Details: map[string]any{
		"generations": res.Generations, "sessions": res.Sessions,
	}}
	if err := j.st.AppendAuditEvent(ctx, ev); err != nil {
		return res, fmt.Errorf("retention: record audit event: %w", err)
	}
	return res, nil
}

func (j *Job) deleteGenerations(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		n, err := j.st.DeleteGenerationsBefore(ctx, before, j.cfg.BatchSize)
		total += n
		if err != nil {
			return total, fmt.Errorf("retention: %w", err)
		}
		if n < int64(j.cfg.BatchSize) {
			return total, nil
		}
		if err := j.pause(ctx); err != nil {
			return total, err
		}
	}
}

func (j *Job) deleteSessions(ctx context.Context, before time.Time) ([]string, error) {
	all := []string{}
	for {
		ids, err := j.st.DeleteDeadSessionsBefore(ctx, before, j.cfg.BatchSize)
		all = append(all, ids...)
		if err != nil {
			return all, fmt.Errorf("retention: %w", err)
		}
		if len(ids) < j.cfg.BatchSize {
			return all, nil
		}
		if err := j.pause(ctx); err != nil {
			return all, err
		}
	}
}

func (j *Job) pause(ctx context.Context) error {
	if j.cfg.Pause <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(j.cfg.Pause):
		return nil
	}
}

// Run runs the job every Interval until ctx is done, the first time one
// Interval after the start, so that replicas starting together do not all
// try at once at boot.
func (j *Job) Run(ctx context.Context) {
	t := time.NewTicker(j.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := j.RunOnce(ctx)
		switch {
		case errors.Is(err, ErrLocked):
			j.log.Debug("retention skipped, another replica runs it")
		case err != nil && ctx.Err() == nil:
			j.log.Error("retention run failed", "error", err)
		}
	}
}
