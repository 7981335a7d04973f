package postgres

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentMigrate opens several stores on one empty schema at once,
// as replicas starting together do, and checks each version is applied once.
func TestConcurrentMigrate(t *testing.T) {
	cfg := testSchema(t)
	const replicas = 4
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for range replicas {
		wg.Go(func() {
			s, err := openConfig(t.Context(), cfg.Copy(), nil)
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("open replica: %v", err)
	}

	s, err := openConfig(t.Context(), cfg.Copy(), nil)
	if err != nil {
		t.Fatalf("open after migrations: %v", err)
	}
	defer s.Close()
	var rows, maxVersion int
	err = s.pool.QueryRow(t.Context(),
		`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&rows, &maxVersion)
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	if rows != len(migrations) || maxVersion != len(migrations) {
		t.Fatalf("schema_migrations has %d rows up to version %d, want %d",
			rows, maxVersion, len(migrations))
	}
}

func TestOpenURL(t *testing.T) {
	cfg := testSchema(t)
	schema := cfg.ConnConfig.RuntimeParams["search_path"]
	_, url := connectTestURL(t)
	// Unknown URL parameters become run-time parameters of each connection.
	s, err := Open(t.Context(), url+"&search_path="+schema, 1, 2, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if got := s.pool.Config().MaxConns; got != 2 {
		t.Fatalf("max conns %d, want 2", got)
	}
	if got := s.pool.Config().MinConns; got != 1 {
		t.Fatalf("min conns %d, want 1", got)
	}
	n, err := s.CountGenerations(t.Context())
	if err != nil {
		t.Fatalf("count in migrated schema: %v", err)
	}
	if n != 0 {
		t.Fatalf("count %d in new schema, want 0", n)
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback refuses the connection.
	_, err := Open(ctx, "postgres://user:sekrit-pw@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", 0, 0, nil)
	if err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "sekrit-pw") {
		t.Fatalf("error shows the password: %v", err)
	}

	_, err = Open(ctx, "postgres://user:sekrit-pw@127.0.0.1:bad/x", 0, 0, nil)
	if err == nil {
		t.Fatal("open of an invalid url succeeded")
	}
	if strings.Contains(err.Error(), "sekrit-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
}
