package sqlite

import (
	"context"
	"path/filepath"
	"testing"
)

// OpenTest returns a migrated Store on a new file in a temporary directory
// of t, closed when t ends. It fails t when the file cannot be opened.
func OpenTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "test.db"), nil)
	if err != nil {
		t.Fatalf("open test sqlite store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close test sqlite store: %v", err)
		}
	})
	return s
}

// ExecRaw runs query on the writer, bypassing the record methods. Tests use
// it to tamper with rows.
func (s *Store) ExecRaw(ctx context.Context, query string, args ...any) error {
	_, err := s.write.ExecContext(ctx, query, args...)
	return err
}
