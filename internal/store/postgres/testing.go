package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// defaultTestURLs are tried in order when TEST_DATABASE_URL is not set:
// local servers with trust authentication accept either role.
var defaultTestURLs = []string{
	"postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
	"postgres://root@127.0.0.1:5432/test?sslmode=disable",
}

// OpenTest returns a migrated Store in a new schema with a random name in
// the database at TEST_DATABASE_URL (by default the database "test" on
// 127.0.0.1:5432, as user postgres or root). The schema is dropped and the
// store closed when t ends. When the database cannot be reached, OpenTest
// fails t if the environment variable CI is "true" and skips t otherwise.
func OpenTest(t testing.TB) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := openConfig(ctx, testSchema(t), nil)
	if err != nil {
		t.Fatalf("open test postgres store: %v", err)
	}
	// Registered after the schema's clean-up, so it runs before it.
	t.Cleanup(func() { s.Close() })
	return s
}

// testSchema creates an empty schema for t, dropped when t ends, and
// returns a pool configuration whose search_path selects it.
func testSchema(t testing.TB) *pgxpool.Config {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	admin, url := connectTest(ctx, t)
	name := "test_" + randomHex(8)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		admin.Close(ctx)
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Errorf("drop test schema %s: %v", name, err)
		}
		admin.Close(ctx)
	})

	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse test database url: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = name
	cfg.MaxConns = 4
	return cfg
}

// connectTestURL returns a connection to the test database, closed when t
// ends, and its URL.
func connectTestURL(t testing.TB) (*pgx.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, url := connectTest(ctx, t)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, url
}

// connectTest returns a connection to the test database and its URL.
func connectTest(ctx context.Context, t testing.TB) (*pgx.Conn, string) {
	t.Helper()
	urls := defaultTestURLs
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		urls = []string{u}
	}
	var lastErr error
	for _, u := range urls {
		conn, err := pgx.Connect(ctx, u)
		if err == nil {
			return conn, u
		}
		lastErr = err
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("postgres for tests unreachable: %v", lastErr)
	}
	t.Skipf("postgres for tests unreachable, set TEST_DATABASE_URL: %v", lastErr)
	return nil, ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ExecRaw runs query on the pool, bypassing the record methods. Tests use it
// to tamper with rows.
func (s *Store) ExecRaw(ctx context.Context, query string, args ...any) error {
	_, err := s.pool.Exec(ctx, query, args...)
	return err
}
