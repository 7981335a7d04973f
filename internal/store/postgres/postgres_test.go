package postgres_test

import (
	"testing"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/postgres"
	"github.com/grokproxy/grokproxy/internal/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t testing.TB) store.Store { return postgres.OpenTest(t) })
}

func TestPoolStats(t *testing.T) {
	st := postgres.OpenTest(t)
	stats := st.PoolStats()
	if stats["max"] < 1 {
		t.Errorf("max connections %d, want at least 1", stats["max"])
	}
	if stats["in_use"] != 0 {
		t.Errorf("in_use %d with no query running", stats["in_use"])
	}
}
