package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

func testDeleteGenerationsBefore(t *testing.T, s store.Store) {
	var batch []store.Generation
	for i := range 25 {
		batch = append(batch, newGeneration(fmt.Sprintf("g%02d", i), "u1", at(time.Duration(i)*time.Hour)))
	}
	must(t, "insert", s.InsertGenerations(ctx(t), batch))

	cut := at(20 * time.Hour) // g00 … g19 are older
	n, err := s.DeleteGenerationsBefore(ctx(t), cut, 8)
	must(t, "delete batch 1", err)
	mustEqual(t, "batch 1 deleted", n, int64(8))
	list, err := s.Generations(ctx(t), store.GenerationFilter{Limit: 100})
	must(t, "list", err)
	mustEqual(t, "oldest go first", genIDs(list)[len(list)-1], "g08")

	for _, want := range []int64{8, 4, 0} {
		n, err = s.DeleteGenerationsBefore(ctx(t), cut, 8)
		must(t, "delete batch", err)
		mustEqual(t, "batch deleted", n, want)
	}
	total, err := s.CountGenerations(ctx(t))
	must(t, "count", err)
	mustEqual(t, "rows kept", total, int64(5))
}

func testDeleteDeadSessions(t *testing.T, s store.Store) {
	statuses := map[string]string{
		"s-healthy": store.StatusHealthy, "s-quarantined": store.StatusQuarantined,
		"s-expired": store.StatusExpired, "s-revoked": store.StatusRevoked,
		"s-expired2": store.StatusExpired,
	}
	for id, st := range statuses {
		sess := newSession(id)
		sess.Status = st
		must(t, "create "+id, s.CreateSession(ctx(t), &sess))
	}
	fresh := newSession("s-revoked-new")
	fresh.Status, fresh.CreatedAt = store.StatusRevoked, at(48*time.Hour)
	must(t, "create fresh", s.CreateSession(ctx(t), &fresh))
	conv := store.Conversation{UserID: "u1", SessionID: "s-revoked", HistoryHash: "h1"}
	must(t, "save conversation", s.SaveConversation(ctx(t), &conv))

	cut := at(24 * time.Hour)
	ids, err := s.DeleteDeadSessionsBefore(ctx(t), cut, 2)
	must(t, "delete batch 1", err)
	mustEqual(t, "batch 1 size", len(ids), 2)
	more, err := s.DeleteDeadSessionsBefore(ctx(t), cut, 2)
	must(t, "delete batch 2", err)
	ids = append(ids, more...)
	slices.Sort(ids)
	mustEqual(t, "deleted", ids, []string{"s-expired", "s-expired2", "s-revoked"})
	more, err = s.DeleteDeadSessionsBefore(ctx(t), cut, 2)
	must(t, "delete batch 3", err)
	mustEqual(t, "nothing left", len(more), 0)

	left, err := s.Sessions(ctx(t), store.SessionFilter{})
	must(t, "list", err)
	var kept []string
	for _, sess := range left {
		kept = append(kept, sess.ID)
	}
	mustEqual(t, "kept", kept, []string{"s-healthy", "s-quarantined", "s-revoked-new"})
	_, err = s.ConversationByHash(ctx(t), "u1", "h1")
	mustIs(t, "conversation of a deleted session", err, store.ErrNotFound)
}

func testUserDataAndErase(t *testing.T, s store.Store) {
	for _, id := range []string{"u1", "u2"} {
		u := &store.User{ID: id, Name: "name " + id, Active: true, CreatedAt: at(0)}
		must(t, "create user", s.CreateUser(ctx(t), u))
		k := newKey("k-"+id, id)
		must(t, "create key", s.CreateAPIKey(ctx(t), &k))
		c := store.Conversation{UserID: id, SessionID: "s1", HistoryHash: "h-" + id}
		must(t, "save conversation", s.SaveConversation(ctx(t), &c))
		must(t, "insert", s.InsertGenerations(ctx(t), []store.Generation{
			newGeneration("g1-"+id, id, at(0)), newGeneration("g2-"+id, id, at(time.Second)),
		}))
	}

	d, err := s.UserData(ctx(t), "u1")
	must(t, "export", err)
	if d.User == nil || d.User.Name != "name u1" {
		t.Fatalf("exported user: %+v", d.User)
	}
	mustEqual(t, "keys", len(d.Keys), 1)
	mustEqual(t, "key owner", d.Keys[0].UserID, "u1")
	mustEqual(t, "conversations", len(d.Conversations), 1)
	mustEqual(t, "conversation hash", d.Conversations[0].HistoryHash, "h-u1")
	mustEqual(t, "generations", genIDs(d.Generations), []string{"g2-u1", "g1-u1"})

	e, err := s.EraseUserData(ctx(t), "u1")
	must(t, "erase", err)
	mustEqual(t, "erased", e, store.Erasure{User: true, Keys: 1, Conversations: 1, Generations: 2})
	d, err = s.UserData(ctx(t), "u1")
	must(t, "export after erase", err)
	if d.User != nil || len(d.Keys)+len(d.Conversations)+len(d.Generations) > 0 {
		t.Fatalf("data left after erase: %+v", d)
	}
	other, err := s.UserData(ctx(t), "u2")
	must(t, "export other", err)
	mustEqual(t, "other user's generations", len(other.Generations), 2)
	mustEqual(t, "other user's keys", len(other.Keys), 1)

	// A principal without a user row, such as a static key.
	must(t, "insert static", s.InsertGenerations(ctx(t), []store.Generation{
		newGeneration("g-static", "static-abc", at(0))}))
	e, err = s.EraseUserData(ctx(t), "static-abc")
	must(t, "erase static", err)
	mustEqual(t, "erased static", e, store.Erasure{Generations: 1})
}

func testTryLock(t *testing.T, s store.Store) {
	unlock, ok, err := s.TryLock(ctx(t), "retention")
	must(t, "lock", err)
	mustEqual(t, "first holder", ok, true)
	_, ok, err = s.TryLock(ctx(t), "retention")
	must(t, "lock again", err)
	mustEqual(t, "second holder refused", ok, false)
	other, ok, err := s.TryLock(ctx(t), "another")
	must(t, "lock another name", err)
	mustEqual(t, "other name free", ok, true)
	other()
	unlock()
	unlock() // a second call is harmless
	again, ok, err := s.TryLock(ctx(t), "retention")
	must(t, "lock after unlock", err)
	mustEqual(t, "free after unlock", ok, true)
	again()
}
