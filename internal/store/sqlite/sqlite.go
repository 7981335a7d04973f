// Package sqlite is the embedded store: one SQLite file in WAL mode,
// through the pure Go driver modernc.org/sqlite.
//
// A Store keeps two connection pools on the file. Writes go through a pool
// of one connection whose transactions start with BEGIN IMMEDIATE, so they
// queue on busy_timeout instead of failing on a lock upgrade. Reads use a
// separate pool that WAL lets run beside the writer. Other processes, such
// as a CLI command beside a running server, may open the same file.
//
// Times are stored as INTEGER unix milliseconds, with 0 for a zero time.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlstore"
)

// busyTimeout is how long a statement waits for a lock held by another
// connection or process before it fails with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a store.Store on one SQLite file. It is safe for concurrent use.
type Store struct {
	*sqlstore.Store

	path  string
	write *sql.DB // one connection, so writes are serialized in process
	read  *sql.DB
	log   *slog.Logger

	lockMu sync.Mutex      // guards locks
	locks  map[string]bool // names held through TryLock
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the SQLite database at path and applies pending
// migrations. A nil log discards log records.
func Open(ctx context.Context, path string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	write, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	read, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	read.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	read.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)))

	s := &Store{path: path, write: write, read: read, log: log}
	s.Store = sqlstore.New(backend{s}, nil)
	if err := connectWriter(ctx, write); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	// The database holds prompts and answers, so only its owner may read
	// it. The driver creates the files with the process umask.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("could not restrict the database file's mode to 0600", "path", p, "error", err)
		}
	}
	return s, nil
}

// connectWriter opens the writer's connection, retrying while the file is
// busy. Switching a new file to WAL needs an exclusive lock. When several
// handles open a new file at once, that switch failed with SQLITE_BUSY
// before busy_timeout had passed (see TestConcurrentOpen). Once the file is
// in WAL mode, the setting persists and later connections need no lock.
func connectWriter(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := db.PingContext(ctx)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func isBusy(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) &&
		(e.Code()&0xff == sqlite3.SQLITE_BUSY || e.Code()&0xff == sqlite3.SQLITE_LOCKED)
}

// dsn returns the driver's data source name for path. The writer's
// transactions take the write lock at BEGIN, and readers may not write.
func dsn(path string, writer bool) string {
	q := url.Values{}
	// busy_timeout comes first so that the pragmas after it wait for locks.
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	if writer {
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Path returns the file name the store was opened with.
func (s *Store) Path() string { return s.path }

// Ping checks that both pools can reach the file.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite %q: %w", s.path, err)
	}
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite %q: %w", s.path, err)
	}
	return nil
}

// Close closes both pools. In WAL mode the last connection to close
// checkpoints the log into the database file.
func (s *Store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// backend adapts the two pools to sqlstore.Backend.
type backend struct{ s *Store }

func (b backend) Reader() sqlstore.Querier { return querier{b.s.read} }
func (b backend) Writer() sqlstore.Querier { return querier{b.s.write} }

func (b backend) InTx(ctx context.Context, fn func(q sqlstore.Querier) error) error {
	return inTx(ctx, b.s.write, fn)
}

func (backend) TimeArg(t time.Time) any {
	if t.IsZero() {
		return int64(0)
	}
	return t.UnixMilli()
}

func (backend) TimeDest(t *time.Time) any { return (*millis)(t) }

func (backend) MapError(err error) error {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return err
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("referenced record %w: %w", store.ErrNotFound, err)
	}
	return err
}

// LockTx needs no lock: write transactions begin with BEGIN IMMEDIATE, so
// they already run one at a time, across processes too.
func (backend) LockTx(context.Context, sqlstore.Querier, int64) error { return nil }

// MaxBatchRows is 1, because inside one transaction single-row INSERTs were
// as fast as multi-row ones. Statements of hundreds of rows were much slower
// per row. Measured with modernc.org/sqlite v1.62 on a 2-core machine, by
// the storetest batch of 3000 generations inserted twice: 0.2s at 1 row per
// statement, 3.1s at 200 rows, 17.7s at 1310 rows.
func (backend) MaxBatchRows(int) int { return 1 }

// inTx runs fn in a transaction on db.
func inTx(ctx context.Context, db *sql.DB, fn func(q sqlstore.Querier) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(querier{tx}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// millis scans an INTEGER of unix milliseconds into a time.Time. Both 0
// and NULL become the zero time.
type millis time.Time

func (m *millis) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*m = millis{}
	case int64:
		if v == 0 {
			*m = millis{}
			return nil
		}
		*m = millis(time.UnixMilli(v).UTC())
	default:
		return fmt.Errorf("scan time: got %T, want INTEGER milliseconds", src)
	}
	return nil
}

// TryLock takes the named lock within this process. A SQLite file serves
// one machine, where the server is the only long-running holder; a command
// run beside it may hold the same name at the same time, so work done
// under the lock must be safe to repeat.
func (s *Store) TryLock(_ context.Context, name string) (func(), bool, error) {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if s.locks[name] {
		return nil, false, nil
	}
	if s.locks == nil {
		s.locks = map[string]bool{}
	}
	s.locks[name] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			s.lockMu.Lock()
			delete(s.locks, name)
			s.lockMu.Unlock()
		})
	}, true, nil
}

// PoolStats reports the connections of the reader and writer pools:
// in_use, idle and max (0 when unbounded).
func (s *Store) PoolStats() map[string]int {
	r, w := s.read.Stats(), s.write.Stats()
	return map[string]int{
		"in_use": r.InUse + w.InUse,
		"idle":   r.Idle + w.Idle,
		"max":    r.MaxOpenConnections + w.MaxOpenConnections,
	}
}
