package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"sync"
	"testing"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
	"github.com/grokproxy/grokproxy/internal/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t testing.TB) store.Store { return sqlite.OpenTest(t) })
}

// TestSecondHandle opens the file a second time, as a CLI command does beside
// a running server, and checks that each handle reads the other's writes.
func TestSecondHandle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	server, err := sqlite.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("open first handle: %v", err)
	}
	defer server.Close()
	sess := store.Session{ID: "s1", Provider: store.ProviderGrok, Credential: []byte("c"),
		CredentialHash: "h1"}
	if err := server.CreateSession(t.Context(), &sess); err != nil {
		t.Fatalf("create session: %v", err)
	}

	cli, err := sqlite.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("open second handle: %v", err)
	}
	defer cli.Close()
	got, err := cli.Session(t.Context(), "s1")
	if err != nil {
		t.Fatalf("read through second handle: %v", err)
	}
	if got.CredentialHash != "h1" {
		t.Fatalf("credential hash %q, want %q", got.CredentialHash, "h1")
	}

	if err := cli.CreateUser(t.Context(), &store.User{ID: "u1", Name: "ann"}); err != nil {
		t.Fatalf("write through second handle: %v", err)
	}
	u, err := server.User(t.Context(), "u1")
	if err != nil {
		t.Fatalf("read second handle's write: %v", err)
	}
	if u.Name != "ann" {
		t.Fatalf("user name %q, want %q", u.Name, "ann")
	}
}

// TestConcurrentOpen migrates one new file from several handles at once,
// as processes starting together do.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "race.db")
	const handles = 4
	errs := make(chan error, handles)
	stores := make(chan *sqlite.Store, handles)
	var wg sync.WaitGroup
	for range handles {
		wg.Go(func() {
			s, err := sqlite.Open(t.Context(), path, nil)
			if err != nil {
				errs <- err
				return
			}
			stores <- s
		})
	}
	wg.Wait()
	close(errs)
	close(stores)
	for err := range errs {
		t.Errorf("open: %v", err)
	}
	for s := range stores {
		if err := s.Ping(t.Context()); err != nil {
			t.Errorf("ping: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

func TestVersionsRecorded(t *testing.T) {
	s := sqlite.OpenTest(t)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	db, err := sql.Open("sqlite", "file:"+s.Path()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, maxVersion int
	if err := db.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &maxVersion); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	if n != maxVersion {
		t.Fatalf("%d rows in schema_migrations for max version %d, want one per version", n, maxVersion)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal mode %q, want wal", mode)
	}
}

func TestPoolStats(t *testing.T) {
	st := sqlite.OpenTest(t)
	stats := st.PoolStats()
	if stats["max"] < 2 {
		t.Errorf("max connections %d, want the writer and at least one reader", stats["max"])
	}
	if stats["in_use"] != 0 {
		t.Errorf("in_use %d with no query running", stats["in_use"])
	}
}
