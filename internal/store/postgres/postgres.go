// Package postgres is the store for replicas: PostgreSQL through a pgx
// connection pool. Times are timestamptz columns, with NULL for a zero
// time. JSON documents are jsonb and ciphertexts bytea.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlstore"
)

// maxParameters is the limit of the PostgreSQL wire protocol on bound
// parameters in one statement.
const maxParameters = 65535

// maxBatchRows caps the rows of one multi-row INSERT below what
// maxParameters allows, so that one statement stays a modest message.
const maxBatchRows = 1000

// Store is a store.Store on a PostgreSQL database. It is safe for
// concurrent use.
type Store struct {
	*sqlstore.Store

	pool *pgxpool.Pool
	log  *slog.Logger
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string) and applies pending migrations. minConns and
// maxConns size the pool, and 0 keeps pgxpool's defaults (0 idle connections,
// and the larger of 4 and the number of CPUs). A nil log discards log
// records.
func Open(ctx context.Context, url string, minConns, maxConns int, log *slog.Logger) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, which can contain a password.
		return nil, errors.New("parse postgres url: invalid connection string")
	}
	if minConns > 0 {
		cfg.MinConns = int32(minConns)
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	}
	return openConfig(ctx, cfg, log)
}

func openConfig(ctx context.Context, cfg *pgxpool.Config, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres pool: %w", err)
	}
	s := &Store{pool: pool, log: log}
	s.Store = sqlstore.New(backend{pool}, nil)
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Ping checks that a connection to the database works.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// Close closes every connection of the pool, waiting for those in use to
// be released.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// conn is the query API that *pgxpool.Pool and pgx.Tx share.
type conn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// querier adapts a pgx handle to sqlstore.Querier.
type querier struct{ c conn }

func (q querier) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := q.c.Exec(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (q querier) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	return q.c.Query(ctx, sql, args...)
}

func (q querier) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	return row{q.c.QueryRow(ctx, sql, args...)}
}

// row reports pgx.ErrNoRows as store.ErrNotFound.
type row struct{ r pgx.Row }

func (r row) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// backend adapts the pool to sqlstore.Backend. Reads and writes share it.
type backend struct{ pool *pgxpool.Pool }

func (b backend) Reader() sqlstore.Querier { return querier{b.pool} }
func (b backend) Writer() sqlstore.Querier { return querier{b.pool} }

func (b backend) InTx(ctx context.Context, fn func(q sqlstore.Querier) error) error {
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		return fn(querier{tx})
	})
}

func (backend) TimeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

func (backend) TimeDest(t *time.Time) any { return (*nullTime)(t) }

func (backend) MapError(err error) error {
	var e *pgconn.PgError
	if !errors.As(err, &e) {
		return err
	}
	switch e.Code {
	case "23505": // unique_violation
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case "23503": // foreign_key_violation
		return fmt.Errorf("referenced record %w: %w", store.ErrNotFound, err)
	}
	return err
}

func (backend) LockTx(ctx context.Context, q sqlstore.Querier, key int64) error {
	_, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key)
	return err
}

func (backend) MaxBatchRows(columns int) int {
	return min(maxBatchRows, maxParameters/columns)
}

// ColumnInsert returns an INSERT ... SELECT over unnest of one array
// parameter per column. jsonb values travel as text and are cast, so that
// callers pass JSON documents as strings.
func (backend) ColumnInsert(table string, columns, types []string, onConflict string) string {
	params := make([]string, len(columns))
	selected := make([]string, len(columns))
	for i, c := range columns {
		typ, expr := types[i], c
		if typ == "jsonb" {
			typ, expr = "text", c+"::jsonb"
		}
		params[i] = "$" + strconv.Itoa(i+1) + "::" + typ + "[]"
		selected[i] = expr
	}
	list := strings.Join(columns, ", ")
	return "INSERT INTO " + table + " (" + list + ") SELECT " + strings.Join(selected, ", ") +
		" FROM unnest(" + strings.Join(params, ", ") + ") AS incoming (" + list + ") " + onConflict
}

// nullTime scans a timestamptz into a time.Time in UTC. NULL becomes the
// zero time.
type nullTime time.Time

func (n *nullTime) ScanTimestamptz(v pgtype.Timestamptz) error {
	if !v.Valid {
		*n = nullTime{}
		return nil
	}
	if v.InfinityModifier != pgtype.Finite {
		return fmt.Errorf("scan time: infinite timestamp")
	}
	*n = nullTime(v.Time.UTC())
	return nil
}

// TryLock takes a session-level advisory lock named name on a connection of
// its own, which it holds until unlock. Every replica on the database sees
// the lock; when the holder's connection drops, the server releases it.
func (s *Store) TryLock(ctx context.Context, name string) (func(), bool, error) {
	key := lockKey(name)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock %q: %w", name, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("lock %q: %w", name, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	var once sync.Once
	unlock := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
				// The lock lives as long as the connection: close it.
				conn.Conn().Close(ctx)
			}
			conn.Release()
		})
	}
	return unlock, true, nil
}

// lockKey maps a lock name to an advisory lock key.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("grokproxy:" + name))
	return int64(h.Sum64())
}

// PoolStats reports the pgxpool connections: in_use, idle and max.
func (s *Store) PoolStats() map[string]int {
	st := s.pool.Stat()
	return map[string]int{
		"in_use": int(st.AcquiredConns()),
		"idle":   int(st.IdleConns()),
		"max":    int(st.MaxConns()),
	}
}
