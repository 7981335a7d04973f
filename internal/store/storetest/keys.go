package storetest

import (
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

func newKey(id, userID string) store.APIKey {
	return store.APIKey{
		ID: id, UserID: userID, KeyID: "kid-" + id, Name: "key " + id, Prefix: "gp-" + id,
		SecretHash: []byte("$2a$12$hash-of-" + id), CreatedAt: at(0),
	}
}

func createKey(t *testing.T, s store.Store, k store.APIKey) store.APIKey {
	t.Helper()
	must(t, "create api key "+k.ID, s.CreateAPIKey(ctx(t), &k))
	return k
}

func keyIDs(list []store.APIKey) []string {
	ids := []string{}
	for _, k := range list {
		ids = append(ids, k.ID)
	}
	return ids
}

func testKeyRoundTrip(t *testing.T, s store.Store) {
	createUser(t, s, store.User{ID: "u1"})
	k := newKey("k1", "u1")
	k.LastUsedAt, k.ExpiresAt, k.RevokedAt = at(time.Minute), at(time.Hour), at(2*time.Minute)
	k.RotatedFrom, k.RotationRequestID = "k0", "req-1"
	want := createKey(t, s, k)

	got, err := s.APIKey(ctx(t), "k1")
	must(t, "get by id", err)
	mustEqual(t, "key by id", got, want)
	got, err = s.APIKeyByKeyID(ctx(t), "kid-k1")
	must(t, "get by key id", err)
	mustEqual(t, "key by key id", got, want)

	plain := createKey(t, s, store.APIKey{UserID: "u1", KeyID: "kid-plain",
		SecretHash: []byte("h")})
	if plain.ID == "" || plain.CreatedAt.IsZero() {
		t.Fatalf("create api key left defaults unset: %+v", plain)
	}
	got, err = s.APIKey(ctx(t), plain.ID)
	must(t, "get plain key", err)
	mustEqual(t, "plain key", got, plain)

	_, err = s.APIKey(ctx(t), "missing")
	mustIs(t, "get missing", err, store.ErrNotFound)
	_, err = s.APIKeyByKeyID(ctx(t), "missing")
	mustIs(t, "get missing key id", err, store.ErrNotFound)
}

func testKeyConflict(t *testing.T, s store.Store) {
	createUser(t, s, store.User{ID: "u1"})
	createKey(t, s, newKey("k1", "u1"))

	dupKeyID := newKey("k2", "u1")
	dupKeyID.KeyID = "kid-k1"
	mustIs(t, "same key id", s.CreateAPIKey(ctx(t), &dupKeyID), store.ErrConflict)
	dupID := newKey("k1", "u1")
	dupID.KeyID = "kid-other"
	mustIs(t, "same id", s.CreateAPIKey(ctx(t), &dupID), store.ErrConflict)

	noUser := newKey("k3", "missing-user")
	mustIs(t, "unknown user", s.CreateAPIKey(ctx(t), &noUser), store.ErrNotFound)
}

func testKeyList(t *testing.T, s store.Store) {
	createUser(t, s, store.User{ID: "u1"})
	createUser(t, s, store.User{ID: "u2"})
	for _, k := range []struct {
		id, user string
		created  time.Duration
	}{{"k3", "u1", 0}, {"k1", "u1", time.Minute}, {"k2", "u2", 30 * time.Second}} {
		key := newKey(k.id, k.user)
		key.CreatedAt = at(k.created)
		createKey(t, s, key)
	}
	list, err := s.APIKeys(ctx(t), "u1")
	must(t, "list u1", err)
	mustEqual(t, "keys of u1 oldest first", keyIDs(list), []string{"k3", "k1"})
	list, err = s.APIKeys(ctx(t), "")
	must(t, "list all", err)
	mustEqual(t, "all keys oldest first", keyIDs(list), []string{"k3", "k2", "k1"})
	list, err = s.APIKeys(ctx(t), "nobody")
	must(t, "list nobody", err)
	mustEqual(t, "keys of unknown user", len(list), 0)
}

func testKeyRotation(t *testing.T, s store.Store) {
	createUser(t, s, store.User{ID: "u1"})
	old := createKey(t, s, newKey("old", "u1"))
	rotated := newKey("new", "u1")
	rotated.RotatedFrom, rotated.RotationRequestID = old.ID, "req-1"
	rotated = createKey(t, s, rotated)

	got, err := s.RotatedKey(ctx(t), old.ID, "req-1")
	must(t, "rotated key", err)
	mustEqual(t, "rotated key", got, rotated)
	_, err = s.RotatedKey(ctx(t), old.ID, "req-2")
	mustIs(t, "other request id", err, store.ErrNotFound)
	_, err = s.RotatedKey(ctx(t), old.ID, "")
	mustIs(t, "empty request id", err, store.ErrNotFound)

	again := newKey("again", "u1")
	again.RotatedFrom, again.RotationRequestID = old.ID, "req-1"
	mustIs(t, "same rotation twice", s.CreateAPIKey(ctx(t), &again), store.ErrConflict)

	// Keys without a request id do not collide.
	for _, id := range []string{"n1", "n2"} {
		k := newKey(id, "u1")
		k.RotatedFrom = old.ID
		createKey(t, s, k)
	}
}

func testKeyRevokedSince(t *testing.T, s store.Store) {
	createUser(t, s, store.User{ID: "u1"})
	for _, id := range []string{"k1", "k2", "k3", "k4", "k5"} {
		createKey(t, s, newKey(id, "u1"))
	}
	must(t, "revoke k1", s.RevokeAPIKey(ctx(t), "k1", at(10*time.Minute)))
	must(t, "expire k2", s.SetAPIKeyExpiry(ctx(t), "k2", at(20*time.Minute)))
	must(t, "revoke k3", s.RevokeAPIKey(ctx(t), "k3", at(-10*time.Minute)))
	must(t, "expire k5", s.SetAPIKeyExpiry(ctx(t), "k5", at(30*time.Minute)))
	must(t, "clear k5 expiry", s.SetAPIKeyExpiry(ctx(t), "k5", time.Time{}))

	cases := []struct {
		name  string
		since time.Time
		want  []string
	}{
		{"base", at(0), []string{"k1", "k2"}},
		{"at revocation", at(10 * time.Minute), []string{"k1", "k2"}},
		{"after revocation", at(15 * time.Minute), []string{"k2"}},
		{"before all", at(-time.Hour), []string{"k1", "k2", "k3"}},
		{"zero", time.Time{}, []string{"k1", "k2", "k3"}},
		{"later", at(time.Hour), []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			list, err := s.APIKeysRevokedSince(ctx(t), tc.since)
			must(t, "list", err)
			mustEqual(t, "ids", keyIDs(list), tc.want)
		})
	}

	got, err := s.APIKey(ctx(t), "k1")
	must(t, "get k1", err)
	mustEqual(t, "revoked at", got.RevokedAt, at(10*time.Minute))
	got, err = s.APIKey(ctx(t), "k5")
	must(t, "get k5", err)
	if !got.ExpiresAt.IsZero() {
		t.Fatalf("expiry %v after clearing, want zero", got.ExpiresAt)
	}

	mustIs(t, "revoke missing", s.RevokeAPIKey(ctx(t), "missing", at(0)), store.ErrNotFound)
	mustIs(t, "expire missing", s.SetAPIKeyExpiry(ctx(t), "missing", at(0)), store.ErrNotFound)
}

func testKeyTouch(t *testing.T, s store.Store) {
	createUser(t, s, store.User{ID: "u1"})
	createKey(t, s, newKey("k1", "u1"))
	createKey(t, s, newKey("k2", "u1"))
	createKey(t, s, newKey("k3", "u1"))

	must(t, "touch empty", s.TouchAPIKeys(ctx(t), nil))
	must(t, "touch", s.TouchAPIKeys(ctx(t), map[string]time.Time{
		"k1": at(time.Minute), "k2": at(2 * time.Minute), "missing": at(time.Minute),
	}))
	// An older time does not move last-used back, but a newer one does.
	must(t, "touch again", s.TouchAPIKeys(ctx(t), map[string]time.Time{
		"k1": at(30 * time.Second), "k2": at(3 * time.Minute),
	}))

	want := map[string]time.Time{"k1": at(time.Minute), "k2": at(3 * time.Minute), "k3": {}}
	for id, w := range want {
		k, err := s.APIKey(ctx(t), id)
		must(t, "get "+id, err)
		if !k.LastUsedAt.Equal(w) {
			t.Errorf("%s last used %v, want %v", id, k.LastUsedAt, w)
		}
	}
}
