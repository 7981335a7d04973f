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
