package storetest

import (
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

func testConversationRoundTrip(t *testing.T, s store.Store) {
	c := store.Conversation{ID: "c1", UserID: "u1", SessionID: "s1", Model: "grok-4",
		HistoryHash: "h1", UpstreamID: "up-1", LastResponseID: "resp-1", CreatedAt: at(0)}
	must(t, "save", s.SaveConversation(ctx(t), &c))
	mustEqual(t, "created at kept", c.CreatedAt, at(0))
	if c.UpdatedAt.IsZero() {
		t.Fatal("save left UpdatedAt zero")
	}

	got, err := s.ConversationByHash(ctx(t), "u1", "h1")
	must(t, "by hash", err)
	mustEqual(t, "conversation", got, c)

	_, err = s.ConversationByHash(ctx(t), "u1", "other")
	mustIs(t, "unknown hash", err, store.ErrNotFound)

	fresh := store.Conversation{UserID: "u1", SessionID: "s1", HistoryHash: "h2"}
	must(t, "save without id", s.SaveConversation(ctx(t), &fresh))
	if fresh.ID == "" || fresh.CreatedAt.IsZero() {
		t.Fatalf("save left defaults unset: %+v", fresh)
	}
}

func testConversationUpdate(t *testing.T, s store.Store) {
	c := store.Conversation{ID: "c1", UserID: "u1", SessionID: "s1", Model: "grok-4",
		HistoryHash: "h1", UpstreamID: "up-1", LastResponseID: "resp-1", CreatedAt: at(0)}
	must(t, "save", s.SaveConversation(ctx(t), &c))

	next := c
	next.CreatedAt = time.Time{}
	next.HistoryHash, next.LastResponseID = "h2", "resp-2"
	must(t, "save next turn", s.SaveConversation(ctx(t), &next))
	mustEqual(t, "created at after update", next.CreatedAt, at(0))

	_, err := s.ConversationByHash(ctx(t), "u1", "h1")
	mustIs(t, "old hash", err, store.ErrNotFound)
	got, err := s.ConversationByHash(ctx(t), "u1", "h2")
	must(t, "new hash", err)
	mustEqual(t, "updated conversation", got, next)
}

func testConversationPerUser(t *testing.T, s store.Store) {
	a := store.Conversation{ID: "c1", UserID: "u1", SessionID: "s1", HistoryHash: "h"}
	must(t, "save u1", s.SaveConversation(ctx(t), &a))

	_, err := s.ConversationByHash(ctx(t), "u2", "h")
	mustIs(t, "other user", err, store.ErrNotFound)

	b := store.Conversation{ID: "c2", UserID: "u2", SessionID: "s2", HistoryHash: "h"}
	must(t, "same hash for another user", s.SaveConversation(ctx(t), &b))
	got, err := s.ConversationByHash(ctx(t), "u2", "h")
	must(t, "by hash u2", err)
	mustEqual(t, "u2 conversation id", got.ID, "c2")

	dup := store.Conversation{ID: "c3", UserID: "u1", SessionID: "s3", HistoryHash: "h"}
	mustIs(t, "same hash same user", s.SaveConversation(ctx(t), &dup), store.ErrConflict)
}
