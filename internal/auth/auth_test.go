package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

// clock is a settable time source for tests. It starts at the real time,
// because the store stamps some times with its own clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fixture is an Authenticator over a fresh SQLite store, counting bcrypt
// checks.
type fixture struct {
	st       store.Store
	clk      *clock
	a        *Authenticator
	compares *atomic.Int64
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{st: sqlite.OpenTest(t), clk: newClock()}
	f.a, f.compares = f.authenticator(cfg)
	return f
}

// authenticator returns another Authenticator over the fixture's store, as
// a second replica would have.
func (f *fixture) authenticator(cfg Config) (*Authenticator, *atomic.Int64) {
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.MinCost
	}
	a := New(cfg, f.st, f.clk.now, discardLog())
	n := new(atomic.Int64)
	a.compare = func(hash, secret []byte) error {
		n.Add(1)
		return bcrypt.CompareHashAndPassword(hash, secret)
	}
	return a, n
}

func (f *fixture) user(t *testing.T, u store.User) store.User {
	t.Helper()
	if err := f.st.CreateUser(context.Background(), &u); err != nil {
		t.Fatalf("create user: %v", err)
	}
	return u
}

func (f *fixture) key(t *testing.T, userID string) (store.APIKey, string) {
	t.Helper()
	k, text, err := f.a.CreateKey(context.Background(), userID, "test key", time.Time{})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return k, text
}

// wrongSecret returns text with the last character of its secret changed.
func wrongSecret(text string) string {
	last := text[len(text)-1]
	repl := byte('a')
	if last == 'a' {
		repl = 'b'
	}
	return text[:len(text)-1] + string(repl)
}

func TestAuthenticateValidKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{DefaultRateLimitPerMinute: 42})
	u := f.user(t, store.User{Name: "alice", Active: true, MaxConcurrentPerKey: 3, Models: []string{"grok-3"}})
	k, text := f.key(t, u.ID)

	if !KeyPattern.MatchString(text) {
		t.Fatalf("key text %q does not match KeyPattern", text)
	}
	p, err := f.a.Authenticate(ctx, text)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	want := Principal{UserID: u.ID, KeyID: k.KeyID, Name: "alice", Role: store.RoleUser,
		RateLimitPerMinute: 42, MaxConcurrent: 3, Models: []string{"grok-3"}}
	if p.UserID != want.UserID || p.KeyID != want.KeyID || p.Name != want.Name || p.Role != want.Role {
		t.Errorf("principal = %+v; want %+v", p, want)
	}
	if p.Admin || p.Static {
		t.Errorf("Admin, Static = %v, %v; want false, false", p.Admin, p.Static)
	}
	if p.RateLimitPerMinute != 42 {
		t.Errorf("RateLimitPerMinute = %d; want the default 42", p.RateLimitPerMinute)
	}
	if p.MaxConcurrent != 3 {
		t.Errorf("MaxConcurrent = %d; want 3", p.MaxConcurrent)
	}
	if !slices.Equal(p.Models, want.Models) {
		t.Errorf("Models = %v; want %v", p.Models, want.Models)
	}
}

func TestAuthenticateUserRateLimit(t *testing.T) {
	f := newFixture(t, Config{DefaultRateLimitPerMinute: 42})
	limit := 7
	u := f.user(t, store.User{Name: "bob", Active: true, RateLimitPerMinute: &limit})
	_, text := f.key(t, u.ID)
	p, err := f.a.Authenticate(context.Background(), text)
	if err != nil {
		t.Fatal(err)
	}
	if p.RateLimitPerMinute != 7 {
		t.Errorf("RateLimitPerMinute = %d; want the user's 7", p.RateLimitPerMinute)
	}
}

func TestAuthenticateCachedSkipsBcrypt(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	u := f.user(t, store.User{Name: "carol", Active: true})
	_, text := f.key(t, u.ID)

	for i := range 5 {
		if _, err := f.a.Authenticate(ctx, text); err != nil {
			t.Fatalf("Authenticate %d: %v", i+1, err)
		}
	}
	if n := f.compares.Load(); n != 1 {
		t.Errorf("bcrypt ran %d times for 5 requests of one key; want 1", n)
	}
}

func TestAuthenticateConcurrentFirstUse(t *testing.T) {
	f := newFixture(t, Config{MaxBcrypt: 4})
	u := f.user(t, store.User{Name: "dan", Active: true})
	_, text := f.key(t, u.ID)
	count := f.compares
	f.a.compare = func(hash, secret []byte) error {
		count.Add(1)
		time.Sleep(100 * time.Millisecond) // keep the check running while the others arrive
		return bcrypt.CompareHashAndPassword(hash, secret)
	}

	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.a.Authenticate(context.Background(), text); err != nil {
				t.Errorf("Authenticate: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := count.Load(); n != 1 {
		t.Errorf("bcrypt ran %d times for 10 concurrent first requests; want 1", n)
	}
}

func TestAuthenticateWrongSecret(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	u := f.user(t, store.User{Name: "erin", Active: true})
	_, text := f.key(t, u.ID)
	bad := wrongSecret(text)

	if _, err := f.a.Authenticate(ctx, bad); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("wrong secret: err = %v; want ErrInvalidKey", err)
	}
	if n := f.compares.Load(); n != 1 {
		t.Fatalf("bcrypt ran %d times for a wrong secret; want 1", n)
	}
	for range 5 {
		if _, err := f.a.Authenticate(ctx, bad); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("repeated wrong secret: err = %v; want ErrInvalidKey", err)
		}
	}
	if n := f.compares.Load(); n != 1 {
		t.Errorf("bcrypt ran %d times for 6 tries of one wrong secret; want 1 (negative cache)", n)
	}
	if _, err := f.a.Authenticate(ctx, text); err != nil {
		t.Errorf("right secret after wrong ones: %v", err)
	}
}

func TestAuthenticateUnknownKeyID(t *testing.T) {
	f := newFixture(t, Config{})
	text, _, _ := NewKey()
	if _, err := f.a.Authenticate(context.Background(), text); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("unknown key id: err = %v; want ErrInvalidKey", err)
	}
	if n := f.compares.Load(); n != 0 {
		t.Errorf("bcrypt ran %d times for an unknown key id; want 0", n)
	}
}

func TestAuthenticateMalformed(t *testing.T) {
	f := newFixture(t, Config{})
	for _, text := range []string{"", "sk-123", "gp_", "gp_ABCDEF012345_" + string(make([]byte, 40))} {
		if _, err := f.a.Authenticate(context.Background(), text); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Authenticate(%q): err = %v; want ErrInvalidKey", text, err)
		}
	}
}

func TestAuthenticateInactiveUser(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	off := f.user(t, store.User{Name: "off", Active: false})
	_, offText := f.key(t, off.ID)
	if _, err := f.a.Authenticate(ctx, offText); !errors.Is(err, ErrInactive) {
		t.Errorf("inactive user: err = %v; want ErrInactive", err)
	}

	expiring := f.user(t, store.User{Name: "expiring", Active: true, ExpiresAt: f.clk.now().Add(time.Hour)})
	_, expiringText := f.key(t, expiring.ID)
	if _, err := f.a.Authenticate(ctx, expiringText); err != nil {
		t.Fatalf("user before expiry: %v", err)
	}
	f.clk.advance(2 * time.Hour)
	if _, err := f.a.Authenticate(ctx, expiringText); !errors.Is(err, ErrInactive) {
		t.Errorf("expired user: err = %v; want ErrInactive", err)
	}
}

func TestAuthenticateExpiredKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	u := f.user(t, store.User{Name: "fay", Active: true})
	_, text, err := f.a.CreateKey(ctx, u.ID, "short", f.clk.now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Authenticate(ctx, text); err != nil {
		t.Fatalf("key before expiry: %v", err)
	}
	f.clk.advance(2 * time.Minute)
	if _, err := f.a.Authenticate(ctx, text); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("cached key after expiry: err = %v; want ErrInvalidKey", err)
	}
	f.a.Forget(KeyPattern.FindStringSubmatch(text)[1])
	if _, err := f.a.Authenticate(ctx, text); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("stored key after expiry: err = %v; want ErrInvalidKey", err)
	}
}

func TestRevokeKeyLocal(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	u := f.user(t, store.User{Name: "gus", Active: true})
	k, text := f.key(t, u.ID)
	if _, err := f.a.Authenticate(ctx, text); err != nil {
		t.Fatal(err)
	}
	if err := f.a.RevokeKey(ctx, k.ID); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	if _, err := f.a.Authenticate(ctx, text); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("revoked key: err = %v; want ErrInvalidKey", err)
	}
	if err := f.a.RevokeKey(ctx, "no-such-key"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeKey(unknown): err = %v; want store.ErrNotFound", err)
	}
}

func TestRevocationReachesOtherReplica(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	replica, _ := f.authenticator(Config{})
	u := f.user(t, store.User{Name: "hal", Active: true})
	k, text := f.key(t, u.ID)

	for _, a := range []*Authenticator{f.a, replica} {
		if _, err := a.Authenticate(ctx, text); err != nil {
			t.Fatalf("Authenticate before revocation: %v", err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go replica.Run(runCtx)

	if err := f.a.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(time.Second)
	for {
		_, err := replica.Authenticate(ctx, text)
		if errors.Is(err, ErrInvalidKey) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other replica still accepts the key %v after revocation; want refused within 1s", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStaticKeys(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{
		StaticKeys:                []secret.Value{secret.New("static-one"), secret.New("")},
		AdminKeys:                 []secret.Value{secret.New("admin-one")},
		DefaultRateLimitPerMinute: 30,
	})

	p, err := f.a.Authenticate(ctx, "static-one")
	if err != nil {
		t.Fatalf("static key: %v", err)
	}
	sum := sha256.Sum256([]byte("static-one"))
	if want := "static-" + hex.EncodeToString(sum[:])[:12]; p.UserID != want {
		t.Errorf("static UserID = %q; want %q", p.UserID, want)
	}
	if !p.Static {
		t.Error("static key: Static = false")
	}
	if p.Admin {
		t.Error("static user key is Admin")
	}
	if p.RateLimitPerMinute != 30 {
		t.Errorf("static RateLimitPerMinute = %d; want the default 30", p.RateLimitPerMinute)
	}

	admin, err := f.a.Authenticate(ctx, "admin-one")
	if err != nil {
		t.Fatalf("admin key: %v", err)
	}
	if !admin.Admin || !admin.Static {
		t.Errorf("admin key: Admin, Static = %v, %v; want true, true", admin.Admin, admin.Static)
	}
	if admin.UserID == p.UserID {
		t.Error("admin key and static key share a user id")
	}

	for _, bad := range []string{"static-on", "static-one ", "admin-one1", ""} {
		if _, err := f.a.Authenticate(ctx, bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Authenticate(%q): err = %v; want ErrInvalidKey", bad, err)
		}
	}
	if n := f.compares.Load(); n != 0 {
		t.Errorf("bcrypt ran %d times for static keys; want 0", n)
	}
}

func TestStaticKeyInGatewayForm(t *testing.T) {
	// An operator may configure a static key that has the form of a
	// gateway key; it must still match, and skip the stored keys.
	text, _, _ := NewKey()
	f := newFixture(t, Config{AdminKeys: []secret.Value{secret.New(text)}})
	p, err := f.a.Authenticate(context.Background(), text)
	if err != nil {
		t.Fatalf("static key in gateway form: %v", err)
	}
	if !p.Static || !p.Admin {
		t.Errorf("Static, Admin = %v, %v; want true, true", p.Static, p.Admin)
	}
	if n := f.compares.Load(); n != 0 {
		t.Errorf("bcrypt ran %d times for a static key; want 0", n)
	}
}

func TestAdminOnlyByRoleOrAdminKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{AdminKeys: []secret.Value{secret.New("admin-one")}})
	plain := f.user(t, store.User{Name: "ivy", Active: true, Role: store.RoleUser})
	boss := f.user(t, store.User{Name: "jon", Active: true, Role: store.RoleAdmin})
	_, plainText := f.key(t, plain.ID)
	_, bossText := f.key(t, boss.ID)

	p, err := f.a.Authenticate(ctx, plainText)
	if err != nil {
		t.Fatal(err)
	}
	if p.Admin {
		t.Error("key of a user with the user role is Admin")
	}
	p, err = f.a.Authenticate(ctx, bossText)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Admin || p.Role != store.RoleAdmin {
		t.Errorf("key of an admin user: Admin, Role = %v, %q; want true, admin", p.Admin, p.Role)
	}
}

func TestAuthenticateBusy(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{MaxBcrypt: 2})
	f.a.busyWait = 100 * time.Millisecond
	u := f.user(t, store.User{Name: "kim", Active: true})
	_, text := f.key(t, u.ID)

	for range cap(f.a.slots) {
		f.a.slots <- struct{}{}
	}
	if _, err := f.a.Authenticate(ctx, text); !errors.Is(err, ErrBusy) {
		t.Fatalf("saturated bcrypt slots: err = %v; want ErrBusy", err)
	}
	if n := f.compares.Load(); n != 0 {
		t.Errorf("bcrypt ran %d times without a slot; want 0", n)
	}

	<-f.a.slots
	if _, err := f.a.Authenticate(ctx, text); err != nil {
		t.Errorf("Authenticate with a free slot: %v", err)
	}
}

func TestRotateKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	u := f.user(t, store.User{Name: "lee", Active: true})
	old, oldText := f.key(t, u.ID)
	if _, err := f.a.Authenticate(ctx, oldText); err != nil {
		t.Fatal(err)
	}

	next, nextText, err := f.a.RotateKey(ctx, old.ID, "req-1", time.Hour)
	if err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	if nextText == "" {
		t.Fatal("first rotation returned no key text")
	}
	if next.RotatedFrom != old.ID || next.RotationRequestID != "req-1" || next.UserID != u.ID {
		t.Errorf("rotated key = %+v; want RotatedFrom %q, request req-1, user %q", next, old.ID, u.ID)
	}
	p, err := f.a.Authenticate(ctx, nextText)
	if err != nil {
		t.Fatalf("new key: %v", err)
	}
	if p.UserID != u.ID {
		t.Errorf("new key's user = %q; want %q", p.UserID, u.ID)
	}
	if _, err := f.a.Authenticate(ctx, oldText); err != nil {
		t.Errorf("old key during grace: %v", err)
	}

	again, againText, err := f.a.RotateKey(ctx, old.ID, "req-1", time.Hour)
	if err != nil {
		t.Fatalf("repeated RotateKey: %v", err)
	}
	if again.ID != next.ID {
		t.Errorf("repeated rotation minted key %q; want the first one %q", again.ID, next.ID)
	}
	if againText != "" {
		t.Error("repeated rotation returned key text again")
	}
	keys, err := f.st.APIKeys(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Errorf("user has %d keys after one rotation done twice; want 2", len(keys))
	}

	stored, err := f.st.APIKey(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := next.CreatedAt.Add(time.Hour); !stored.ExpiresAt.Equal(want) {
		t.Errorf("old key expires at %v; want %v (one hour of grace)", stored.ExpiresAt, want)
	}

	f.clk.advance(time.Hour + time.Second)
	if _, err := f.a.Authenticate(ctx, oldText); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("old key after grace: err = %v; want ErrInvalidKey", err)
	}
	if _, err := f.a.Authenticate(ctx, nextText); err != nil {
		t.Errorf("new key after grace: %v", err)
	}
}

func TestRotateKeyNoGrace(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	u := f.user(t, store.User{Name: "max", Active: true})
	old, oldText := f.key(t, u.ID)
	f.a.Authenticate(ctx, oldText)

	if _, _, err := f.a.RotateKey(ctx, old.ID, "", 0); err != nil {
		t.Fatal(err)
	}
	f.clk.advance(time.Millisecond)
	if _, err := f.a.Authenticate(ctx, oldText); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("old key after rotation without grace: err = %v; want ErrInvalidKey", err)
	}
}

func TestRotateRevokedKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	u := f.user(t, store.User{Name: "ned", Active: true})
	old, _ := f.key(t, u.ID)
	if err := f.a.RevokeKey(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.a.RotateKey(ctx, old.ID, "req", time.Hour); !errors.Is(err, ErrRevoked) {
		t.Errorf("RotateKey(revoked): err = %v; want ErrRevoked", err)
	}
}

func TestLastUsedFlushed(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	u := f.user(t, store.User{Name: "ola", Active: true})
	k, text := f.key(t, u.ID)
	if _, err := f.a.Authenticate(ctx, text); err != nil {
		t.Fatal(err)
	}
	used := f.clk.now()

	var warned time.Time
	f.a.flushLastUsed(ctx, &warned)
	stored, err := f.st.APIKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := used.Truncate(time.Millisecond); !stored.LastUsedAt.Equal(want) {
		t.Errorf("LastUsedAt = %v; want %v", stored.LastUsedAt, want)
	}
}

func TestCreateKeyUnknownUser(t *testing.T) {
	f := newFixture(t, Config{})
	if _, _, err := f.a.CreateKey(context.Background(), "nobody", "k", time.Time{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateKey(unknown user): err = %v; want store.ErrNotFound", err)
	}
}
