package auth

import (
	"context"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

// BenchmarkAuthenticateCached measures the path every request after a
// key's first takes: the key text is found in the cache, so neither the
// store nor bcrypt is touched.
func BenchmarkAuthenticateCached(b *testing.B) {
	ctx := context.Background()
	st := sqlite.OpenTest(b)
	a := New(Config{BcryptCost: 4}, st, time.Now, discardLog())
	u := store.User{Name: "bench", Active: true}
	if err := st.CreateUser(ctx, &u); err != nil {
		b.Fatalf("create user: %v", err)
	}
	_, text, err := a.CreateKey(ctx, u.ID, "bench", time.Time{})
	if err != nil {
		b.Fatalf("CreateKey: %v", err)
	}
	p, err := a.Authenticate(ctx, text)
	if err != nil || p.UserID != u.ID {
		b.Fatalf("warm-up Authenticate = %+v, %v; want user %s", p, err, u.ID)
	}

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Authenticate(ctx, text); err != nil {
				b.Errorf("Authenticate: %v", err)
				return
			}
		}
	})
}
