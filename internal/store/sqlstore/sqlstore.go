// Package sqlstore holds the queries that the SQLite and PostgreSQL stores
// share. A backend supplies its database handles and the few things that
// differ between the two (how times are stored, how errors are reported)
// through Backend, and Store implements every record method of
// store.Store. Migrations, Ping and Close stay in the backends.
//
// The shared SQL uses $1-style placeholders, ON CONFLICT and partial unique
// indexes, which both PostgreSQL and SQLite (3.24 and later) accept.
package sqlstore

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Row is a single-row query result. Scan returns an error that wraps
// store.ErrNotFound when the query matched no row.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a multi-row query result, as *sql.Rows and pgx.Rows provide it.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Querier runs statements on a connection pool or inside a transaction.
type Querier interface {
	// Exec runs a statement and returns the number of rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Backend is what a database adds to the shared queries.
type Backend interface {
	// Reader runs queries that only read.
	Reader() Querier
	// Writer runs single statements that write.
	Writer() Querier
	// InTx runs fn in one write transaction, committing when fn returns nil
	// and rolling back otherwise.
	InTx(ctx context.Context, fn func(q Querier) error) error

	// TimeArg converts t to the argument value for a time column. A zero
	// time becomes the backend's "not set" value.
	TimeArg(t time.Time) any
	// TimeDest returns a scan destination that stores a time column in
	// *t, as a zero time when the column is not set.
	TimeDest(t *time.Time) any

	// MapError turns a uniqueness violation into an error wrapping
	// store.ErrConflict and a foreign key violation into one wrapping
	// store.ErrNotFound. It returns other errors unchanged.
	MapError(err error) error
	// LockTx takes the transaction-scoped lock key inside the transaction
	// of q, so that transactions taking the same key run one at a time
	// across processes. A backend whose write transactions already exclude
	// each other returns nil.
	LockTx(ctx context.Context, q Querier, key int64) error
	// MaxBatchRows returns the number of rows one INSERT statement carries
	// when each row binds the given number of columns. It must keep the
	// statement under the backend's limit on bound parameters.
	MaxBatchRows(columns int) int
}

// ColumnInserter is a Backend that inserts many rows with one statement
// whose arguments are one array per column. The statement text is the same
// for any number of rows, so it is prepared once, and it binds a handful of
// parameters instead of one per value.
type ColumnInserter interface {
	// ColumnInsert returns the statement that inserts into table the rows
	// given as one array argument per column, of the given SQL types, and
	// ends with the clause onConflict.
	ColumnInsert(table string, columns, types []string, onConflict string) string
	// ColumnArg returns the argument that binds column, a slice of
	// pointers ([]*string, []*ByteText, []*int, []*int64, []*bool or
	// []*time.Time), as one array, or nil for another type. A nil
	// pointer binds NULL.
	ColumnArg(column any) any
}

// Store implements the record methods of store.Store over a Backend. It is
// safe for concurrent use when the backend's handles are.
type Store struct {
	b   Backend
	now func() time.Time
}

// New returns a Store over b. now supplies creation and update times, and
// nil means time.Now. Times are cut to whole milliseconds, the precision that
// both backends keep.
func New(b Backend, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{b: b, now: now}
}

// Now returns the current time as the store records it: UTC, whole
// milliseconds.
func (s *Store) Now() time.Time {
	return Truncate(s.now())
}

// Truncate returns t in UTC, cut to whole milliseconds.
func Truncate(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Millisecond)
}

func newID() string {
	return uuid.NewString()
}

// scanAll reads every row with scan and closes rows. A non-nil err, from
// the query that produced rows, is returned as is.
func scanAll[T any](rows Rows, err error, scan func(Row) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
