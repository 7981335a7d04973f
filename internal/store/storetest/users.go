package storetest

import (
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

func createUser(t *testing.T, s store.Store, u store.User) store.User {
	t.Helper()
	must(t, "create user "+u.ID, s.CreateUser(ctx(t), &u))
	return u
}

func testUserRoundTrip(t *testing.T, s store.Store) {
	rate := 30
	want := createUser(t, s, store.User{
		ID: "u1", Name: "ann", Role: store.RoleAdmin, Active: true,
		RateLimitPerMinute: &rate, MaxConcurrentPerKey: 4,
		Models: []string{"grok-4", "grok-3-mini"}, ExpiresAt: at(time.Hour),
		CreatedAt: at(0), Metadata: map[string]string{"team": "search"},
	})
	got, err := s.User(ctx(t), "u1")
	must(t, "get user", err)
	mustEqual(t, "user", got, want)

	plain := createUser(t, s, store.User{Name: "bob"})
	if plain.ID == "" {
		t.Fatal("create user left ID empty")
	}
	mustEqual(t, "default role", plain.Role, store.RoleUser)
	got, err = s.User(ctx(t), plain.ID)
	must(t, "get plain user", err)
	mustEqual(t, "plain user", got, plain)
	if got.RateLimitPerMinute != nil {
		t.Fatalf("rate limit %d, want nil", *got.RateLimitPerMinute)
	}

	mustIs(t, "duplicate id", s.CreateUser(ctx(t), &store.User{ID: "u1", Name: "x"}),
		store.ErrConflict)
	_, err = s.User(ctx(t), "missing")
	mustIs(t, "get missing", err, store.ErrNotFound)
}

func testUserList(t *testing.T, s store.Store) {
	list, err := s.Users(ctx(t))
	must(t, "list empty", err)
	mustEqual(t, "users in empty store", len(list), 0)

	createUser(t, s, store.User{ID: "b", Name: "second", CreatedAt: at(time.Minute)})
	createUser(t, s, store.User{ID: "a", Name: "first", CreatedAt: at(0)})
	createUser(t, s, store.User{ID: "c", Name: "third", CreatedAt: at(2 * time.Minute)})
	list, err = s.Users(ctx(t))
	must(t, "list users", err)
	var names []string
	for _, u := range list {
		names = append(names, u.Name)
	}
	mustEqual(t, "names oldest first", names, []string{"first", "second", "third"})
}

func testUserUpdate(t *testing.T, s store.Store) {
	u := createUser(t, s, store.User{ID: "u1", Name: "ann", Active: true, CreatedAt: at(0)})
	rate := 5
	u.Name, u.Role, u.Active = "ann b", store.RoleAdmin, false
	u.RateLimitPerMinute, u.MaxConcurrentPerKey = &rate, 2
	u.Models, u.ExpiresAt = []string{"grok-4"}, at(time.Hour)
	u.Metadata = map[string]string{"k": "v"}
	must(t, "update", s.UpdateUser(ctx(t), &u))
	if !u.UpdatedAt.After(u.CreatedAt) {
		t.Fatalf("updated at %v, want after created at %v", u.UpdatedAt, u.CreatedAt)
	}
	got, err := s.User(ctx(t), "u1")
	must(t, "get user", err)
	mustEqual(t, "updated user", got, u)

	u.RateLimitPerMinute, u.Models, u.Metadata = nil, nil, nil
	must(t, "clear fields", s.UpdateUser(ctx(t), &u))
	got, err = s.User(ctx(t), "u1")
	must(t, "get user", err)
	mustEqual(t, "cleared user", got, u)

	mustIs(t, "update missing", s.UpdateUser(ctx(t), &store.User{ID: "missing"}),
		store.ErrNotFound)
}

func testUserDelete(t *testing.T, s store.Store) {
	createUser(t, s, store.User{ID: "u1", Name: "ann"})
	createUser(t, s, store.User{ID: "u2", Name: "bob"})
	k1 := createKey(t, s, newKey("k1", "u1"))
	k2 := createKey(t, s, newKey("k2", "u2"))

	must(t, "delete", s.DeleteUser(ctx(t), "u1"))
	_, err := s.User(ctx(t), "u1")
	mustIs(t, "get deleted", err, store.ErrNotFound)
	_, err = s.APIKey(ctx(t), k1.ID)
	mustIs(t, "key of deleted user", err, store.ErrNotFound)
	_, err = s.APIKey(ctx(t), k2.ID)
	must(t, "key of other user", err)
	mustIs(t, "delete again", s.DeleteUser(ctx(t), "u1"), store.ErrNotFound)
}

func testCountAdmins(t *testing.T, s store.Store) {
	n, err := s.CountAdmins(ctx(t))
	must(t, "count in empty store", err)
	mustEqual(t, "admins in empty store", n, 0)

	createUser(t, s, store.User{ID: "a1", Role: store.RoleAdmin, Active: true})
	createUser(t, s, store.User{ID: "a2", Role: store.RoleAdmin, Active: true})
	createUser(t, s, store.User{ID: "a3", Role: store.RoleAdmin, Active: false})
	createUser(t, s, store.User{ID: "u1", Role: store.RoleUser, Active: true})
	n, err = s.CountAdmins(ctx(t))
	must(t, "count", err)
	mustEqual(t, "active admins", n, 2)
}
