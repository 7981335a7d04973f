// Package audit writes the audit record of every admitted request to the
// store's generations table.
//
// Records wait in a bounded in-memory queue. One writer goroutine (Run)
// writes them in batches. While the store is unreachable, batches go to an
// append-only spool file, which is replayed in order once the store is
// reachable again. A replay may repeat rows that reached the store before a failure, but
// InsertGenerations skips a row whose ID exists, so the repeat is harmless.
// Close writes what is left in the queue to the store, or to the spool when
// the store is down.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/grokproxy/grokproxy/internal/store"
)

// ErrFull is returned by Admit when the queue is full, the spool has no room
// and the policy is PolicyReject.
var ErrFull = errors.New("audit queue and spool are full")

// ErrClosed is returned by Admit after Close.
var ErrClosed = errors.New("audit writer closed")

// Policies for a full spool.
const (
	// PolicyReject keeps every admitted record and makes Admit fail until
	// the spool has room again.
	PolicyReject = "refuse"
	// PolicyDropOldest deletes the oldest spooled records to make room for
	// new ones, and counts them as dropped.
	PolicyDropOldest = "drop_oldest"
)

// Defaults for the zero fields of Config.
const (
	DefaultQueueSize     = 10000
	DefaultBatchSize     = 500
	DefaultFlushInterval = 200 * time.Millisecond
	DefaultSpoolMaxBytes = 256 << 20
	DefaultRetryInterval = time.Second
)

// writeTimeout bounds one InsertGenerations or Ping call.
//
// NOTE: records wait in memory while a store call hangs, so a kill -9 during
// a hang loses up to writeTimeout of records, not only one flush interval.
const writeTimeout = 5 * time.Second

// Config sets the queue, batching and spool of a Writer.
type Config struct {
	// QueueSize is the number of records the queue takes before Admit
	// checks the spool for room. Zero means 10000.
	QueueSize int
	// BatchSize is the maximum number of records per store write. Zero
	// means 500.
	BatchSize int
	// FlushInterval is the longest time a record waits in the queue before
	// the writer flushes it. Zero means 200ms.
	FlushInterval time.Duration
	// SpoolPath is the spool file. Empty means no spool: while the store is
	// down, records wait in memory and are lost if the process stops.
	SpoolPath string
	// SpoolMaxBytes caps the spool file. Zero means 256 MiB. Close may
	// exceed it, because losing records at shutdown is worse.
	SpoolMaxBytes int64
	// FullPolicy is PolicyReject or PolicyDropOldest. Empty or any other
	// value means PolicyReject.
	FullPolicy string
	// RetryInterval is the time between checks of a store that failed.
	// Zero means 1s.
	RetryInterval time.Duration
}

func (c Config) withDefaults() Config {
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.SpoolMaxBytes <= 0 {
		c.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if c.FullPolicy != PolicyDropOldest {
		c.FullPolicy = PolicyReject
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	return c
}

// Stats is a snapshot of a Writer's state. Written, Spooled and Dropped
// count records since New.
type Stats struct {
	Queued       int   // records in memory, waiting for a write
	SpoolBytes   int64 // size of the spool file
	SpoolRecords int   // spooled records not yet committed to the store
	Written      int64 // records committed to the store, directly or by replay
	Spooled      int64 // records appended to the spool
	Dropped      int64 // records lost: dropped for room, corrupt in the spool or unsaved at Close
	Rejected     int64 // records the store refused, kept in the rejected file
}

// Writer batches audit records to the store. Admit, Record, Stats and Erase
// are safe for concurrent use. Run is the single writer goroutine.
type Writer struct {
	cfg Config
	st  store.Store
	log *slog.Logger
	m   *metrics

	mu      sync.Mutex // guards the fields below
	queue   []store.Generation
	taken   int  // records taken from queue by a flush and not yet saved
	closed  bool // Admit fails and Run stops
	drained bool // Close has emptied the queue, so Record saves at once
	stopRun context.CancelFunc
	runDone chan struct{}
	running bool // Run is running

	wake chan struct{} // a full batch is waiting

	// flushMu is held by whatever moves records out of the queue or edits
	// the spool: a flush, a replay, Erase and Close. It guards the fields
	// below.
	flushMu   sync.Mutex
	spool     *spool // nil without a spool, or while it cannot be opened
	storeDown bool   // the last store call failed, so writes wait for a Ping
	fullLog   rateLimit
	downLog   rateLimit

	// Read by Admit and Stats without flushMu.
	spoolFull    atomic.Bool // the spool rejected a batch for lack of room
	spoolBytes   atomic.Int64
	spoolRecords atomic.Int64
	written      atomic.Int64
	spooled      atomic.Int64
	dropped      atomic.Int64
	rejected     atomic.Int64
}

// New returns a Writer over st. It opens the spool, so Stats reports a spool
// left by an earlier process, but starts no goroutine: call Run. Metrics are
// registered on reg unless it is nil.
func New(cfg Config, st store.Store, reg prometheus.Registerer, log *slog.Logger) *Writer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if p := cfg.FullPolicy; p != "" && p != PolicyReject && p != PolicyDropOldest {
		log.Warn("unknown audit spool full policy, using refuse", "policy", p)
	}
	cfg = cfg.withDefaults()
	w := &Writer{
		cfg:     cfg,
		st:      st,
		log:     log,
		wake:    make(chan struct{}, 1),
		fullLog: rateLimit{every: cfg.RetryInterval},
		downLog: rateLimit{every: cfg.RetryInterval},
	}
	w.m = newMetrics(w, reg)

	if cfg.SpoolPath == "" {
		// Without a spool, only the queue can take records.
		w.spoolFull.Store(true)
		return w
	}
	w.flushMu.Lock()
	w.openSpoolLocked()
	w.flushMu.Unlock()
	return w
}

// Admit reports whether a new record can be taken. It returns ErrFull when
// the queue is full and the spool has no room under PolicyReject, and
// ErrClosed after Close.
func (w *Writer) Admit() error {
	w.mu.Lock()
	closed := w.closed
	full := len(w.queue)+w.taken >= w.cfg.QueueSize
	w.mu.Unlock()

	if closed {
		return ErrClosed
	}
	if full && w.cfg.FullPolicy == PolicyReject && w.spoolFull.Load() {
		return ErrFull
	}
	return nil
}

// Record queues g for writing. It sets g.ID to a new "gen_" id when empty
// and g.CreatedAt to now when zero. It does not wait for the store. Under
// PolicyDropOldest with no spool room, a full queue loses its oldest record.
// After Close has drained the queue, Record writes g before returning.
func (w *Writer) Record(g store.Generation) {
	if g.ID == "" {
		g.ID = NewID()
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = time.Now().UTC()
	}

	w.mu.Lock()
	if w.drained {
		w.mu.Unlock()
		w.saveLate(g)
		return
	}
	dropOldest := len(w.queue)+w.taken >= w.cfg.QueueSize && len(w.queue) > 0 &&
		w.cfg.FullPolicy == PolicyDropOldest && w.spoolFull.Load()
	if dropOldest {
		w.queue[0] = store.Generation{}
		w.queue = w.queue[1:]
	}
	w.queue = append(w.queue, g)
	n := len(w.queue)
	w.mu.Unlock()

	if dropOldest {
		w.count(resultDropped, 1)
	}
	if n >= w.cfg.BatchSize {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// NewID returns a new generation id: "gen_" and a time-ordered UUID, so
// that ids of one replica sort roughly by creation time.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	return "gen_" + id.String()
}

// Stats returns a snapshot of the queue, the spool and the counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	queued := len(w.queue) + w.taken
	w.mu.Unlock()
	return Stats{
		Queued:       queued,
		SpoolBytes:   w.spoolBytes.Load(),
		SpoolRecords: int(w.spoolRecords.Load()),
		Written:      w.written.Load(),
		Spooled:      w.spooled.Load(),
		Dropped:      w.dropped.Load(),
		Rejected:     w.rejected.Load(),
	}
}

// Erase removes the records of userID that are still queued or spooled and
// returns how many it removed. Records already in the store are the store's
// to delete. A spooled record that a replay has already committed is removed
// from the file too, but it is not counted.
func (w *Writer) Erase(userID string) (int, error) {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()

	w.mu.Lock()
	kept := w.queue[:0]
	for _, g := range w.queue {
		if g.UserID != userID {
			kept = append(kept, g)
		}
	}
	removed := len(w.queue) - len(kept)
	clear(w.queue[len(kept):])
	w.queue = kept
	w.mu.Unlock()

	n, err := w.eraseSpooledLocked(userID)
	return removed + n, err
}

func (w *Writer) eraseSpooledLocked(userID string) (int, error) {
	s, done, err := w.spoolForLateUseLocked()
	defer done()
	if s == nil {
		return 0, err
	}

	removed := 0
	err = s.rewrite(func(fr frame, committed bool) bool {
		var owner struct{ UserID string }
		if !fr.valid || json.Unmarshal(fr.payload, &owner) != nil || owner.UserID != userID {
			return true
		}
		if !committed {
			removed++
		}
		return false
	})
	if s == w.spool {
		w.syncSpoolStatsLocked(true)
	}
	if err != nil {
		return 0, fmt.Errorf("erase spooled records: %w", err)
	}
	return removed, nil
}

// Close stops Run and writes every queued record to the store, or to the
// spool when the store fails, within ctx's deadline. It returns an error
// when records could not be saved, and counts them as dropped. Calls after
// the first return nil.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	stop, done := w.stopRun, w.runDone
	w.mu.Unlock()

	if stop != nil {
		stop()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("close audit writer: wait for the writer: %w", ctx.Err())
		}
	}

	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	lost := w.drainLocked(ctx)
	if w.spool != nil {
		w.spool.close()
		w.spool = nil
	}
	if lost > 0 {
		return fmt.Errorf("close audit writer: %d records not saved", lost)
	}
	return nil
}

// rateLimit lets one log line through per interval. It is used with
// flushMu held.
type rateLimit struct {
	every time.Duration
	last  time.Time
}

func (r *rateLimit) allow() bool {
	now := time.Now()
	if now.Sub(r.last) < r.every {
		return false
	}
	r.last = now
	return true
}
