package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// newSession returns a session with every field set.
func newSession(id string) store.Session {
	return store.Session{
		ID:                id,
		Provider:          store.ProviderGrok,
		Credential:        []byte("v1:k1:\x00\x01\xfe\xff cipher " + id),
		CredentialHash:    "hash-" + id,
		ProxyURL:          []byte("v1:k1:proxy " + id),
		Label:             "label " + id,
		Status:            store.StatusHealthy,
		StatusReason:      "created",
		CooldownUntil:     at(time.Minute),
		Weight:            3,
		MaxConcurrency:    7,
		CreatedAt:         at(0),
		LastUsedAt:        at(2 * time.Minute),
		ExpiresAt:         at(24 * time.Hour),
		LastHealthCheckAt: at(3 * time.Minute),
		UsageCount:        10,
		SuccessCount:      8,
		FailureCount:      2,
		Metadata: store.SessionMetadata{
			Tier:      "super",
			AccountID: "acct-" + id,
			Quota: map[string]store.Quota{
				"grok-4": {Remaining: 5, Total: 20, WindowSeconds: 7200,
					ResetAt: at(2 * time.Hour), CheckedAt: at(time.Minute)},
			},
			History: []store.StatusChange{
				{At: at(time.Second), From: store.StatusHealthy, To: "resting", Reason: "429"},
			},
		},
	}
}

func createSession(t *testing.T, s store.Store, sess store.Session) store.Session {
	t.Helper()
	must(t, "create session "+sess.ID, s.CreateSession(ctx(t), &sess))
	return sess
}

func testSessionRoundTrip(t *testing.T, s store.Store) {
	want := createSession(t, s, newSession("s1"))
	mustEqual(t, "updated at after create", want.UpdatedAt, want.CreatedAt)

	got, err := s.Session(ctx(t), "s1")
	must(t, "get session", err)
	mustEqual(t, "session", got, want)
}

func testSessionDefaults(t *testing.T, s store.Store) {
	sess := store.Session{Provider: store.ProviderXAI, Credential: []byte("c"),
		CredentialHash: "h"}
	before := time.Now().Add(-time.Second)
	must(t, "create session", s.CreateSession(ctx(t), &sess))

	if sess.ID == "" {
		t.Fatal("create session left ID empty")
	}
	mustEqual(t, "status", sess.Status, store.StatusHealthy)
	if sess.CreatedAt.Before(before) || sess.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("created at %v, want about now", sess.CreatedAt)
	}
	got, err := s.Session(ctx(t), sess.ID)
	must(t, "get session", err)
	mustEqual(t, "session", got, sess)
	if got.ProxyURL != nil {
		t.Fatalf("proxy url %q, want nil", got.ProxyURL)
	}
	if !got.CooldownUntil.IsZero() || !got.ExpiresAt.IsZero() || !got.LastUsedAt.IsZero() {
		t.Fatalf("unset times came back set: %+v", got)
	}
}

func testSessionConflict(t *testing.T, s store.Store) {
	createSession(t, s, newSession("s1"))

	dupHash := newSession("s2")
	dupHash.CredentialHash = "hash-s1"
	mustIs(t, "same credential hash", s.CreateSession(ctx(t), &dupHash), store.ErrConflict)

	dupID := newSession("s1")
	dupID.CredentialHash = "other"
	mustIs(t, "same id", s.CreateSession(ctx(t), &dupID), store.ErrConflict)

	list, err := s.Sessions(ctx(t), store.SessionFilter{})
	must(t, "list sessions", err)
	mustEqual(t, "sessions after conflicts", len(list), 1)
}

func testSessionNotFound(t *testing.T, s store.Store) {
	_, err := s.Session(ctx(t), "missing")
	mustIs(t, "get", err, store.ErrNotFound)
	mustIs(t, "save state", s.SaveSessionState(ctx(t), "missing", store.SessionState{}),
		store.ErrNotFound)
	mustIs(t, "set credential", s.SetSessionCredential(ctx(t), "missing", []byte("c"), nil),
		store.ErrNotFound)
	mustIs(t, "delete", s.DeleteSession(ctx(t), "missing"), store.ErrNotFound)
}

func sessionIDs(list []store.Session) []string {
	ids := []string{}
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return ids
}

func testSessionFilter(t *testing.T, s store.Store) {
	for _, c := range []struct{ id, provider, status string }{
		{"s4", store.ProviderGrok, store.StatusHealthy},
		{"s2", store.ProviderXAI, store.StatusHealthy},
		{"s3", store.ProviderGrok, store.StatusQuarantined},
		{"s1", store.ProviderGrok, store.StatusHealthy},
		{"s5", store.ProviderXAI, store.StatusRevoked},
	} {
		sess := newSession(c.id)
		sess.Provider, sess.Status = c.provider, c.status
		createSession(t, s, sess)
	}
	cases := []struct {
		name   string
		filter store.SessionFilter
		want   []string
	}{
		{"all", store.SessionFilter{}, []string{"s1", "s2", "s3", "s4", "s5"}},
		{"status", store.SessionFilter{Status: store.StatusHealthy}, []string{"s1", "s2", "s4"}},
		{"provider", store.SessionFilter{Provider: store.ProviderXAI}, []string{"s2", "s5"}},
		{"both", store.SessionFilter{Status: store.StatusHealthy, Provider: store.ProviderGrok},
			[]string{"s1", "s4"}},
		{"after", store.SessionFilter{After: "s3"}, []string{"s4", "s5"}},
		{"limit", store.SessionFilter{Limit: 2}, []string{"s1", "s2"}},
		{"none", store.SessionFilter{Status: store.StatusExpired}, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			list, err := s.Sessions(ctx(t), tc.filter)
			must(t, "list sessions", err)
			mustEqual(t, "ids", sessionIDs(list), tc.want)
		})
	}
}

func testSessionPaging(t *testing.T, s store.Store) {
	var want []string
	for i := range 23 {
		id := fmt.Sprintf("s%03d", i)
		sess := newSession(id)
		if i%4 == 0 {
			sess.Status = store.StatusExpired
		}
		createSession(t, s, sess)
		if i%4 != 0 {
			want = append(want, id)
		}
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatalf("paging did not end; ids so far %v", got)
		}
		page, err := s.Sessions(ctx(t), store.SessionFilter{
			Status: store.StatusHealthy, After: after, Limit: 5})
		must(t, "list page", err)
		if len(page) > 5 {
			t.Fatalf("page of %d sessions, limit 5", len(page))
		}
		if len(page) == 0 {
			break
		}
		got = append(got, sessionIDs(page)...)
		after = page[len(page)-1].ID
	}
	mustEqual(t, "paged ids", got, want)
}

func testSessionSaveState(t *testing.T, s store.Store) {
	orig := createSession(t, s, newSession("s1"))
	st := store.SessionState{
		Status:            store.StatusQuarantined,
		StatusReason:      "failure rate 0.4",
		CooldownUntil:     at(time.Hour),
		LastUsedAt:        at(50 * time.Minute),
		LastHealthCheckAt: at(55 * time.Minute),
		UsageCount:        100,
		SuccessCount:      60,
		FailureCount:      40,
		Metadata: store.SessionMetadata{Tier: "heavy",
			History: []store.StatusChange{{At: at(50 * time.Minute), From: store.StatusHealthy,
				To: store.StatusQuarantined, Reason: "failure rate 0.4"}}},
	}
	must(t, "save state", s.SaveSessionState(ctx(t), "s1", st))

	got, err := s.Session(ctx(t), "s1")
	must(t, "get session", err)
	want := orig
	want.Status, want.StatusReason = st.Status, st.StatusReason
	want.CooldownUntil, want.LastUsedAt, want.LastHealthCheckAt =
		st.CooldownUntil, st.LastUsedAt, st.LastHealthCheckAt
	want.UsageCount, want.SuccessCount, want.FailureCount =
		st.UsageCount, st.SuccessCount, st.FailureCount
	want.Metadata = st.Metadata
	if !got.UpdatedAt.After(orig.CreatedAt) {
		t.Fatalf("updated at %v, want after created at %v", got.UpdatedAt, orig.CreatedAt)
	}
	want.UpdatedAt = got.UpdatedAt
	mustEqual(t, "session after save", got, want)

	// Zero times clear the columns.
	must(t, "save zero state", s.SaveSessionState(ctx(t), "s1",
		store.SessionState{Status: store.StatusHealthy}))
	got, err = s.Session(ctx(t), "s1")
	must(t, "get session", err)
	if !got.CooldownUntil.IsZero() || !got.LastUsedAt.IsZero() || !got.LastHealthCheckAt.IsZero() {
		t.Fatalf("times not cleared: %+v", got)
	}
	mustEqual(t, "metadata", got.Metadata, store.SessionMetadata{})
}

func testSessionSetCredential(t *testing.T, s store.Store) {
	orig := createSession(t, s, newSession("s1"))
	must(t, "set credential", s.SetSessionCredential(ctx(t), "s1", []byte("new cipher"),
		[]byte("new proxy")))
	got, err := s.Session(ctx(t), "s1")
	must(t, "get session", err)
	mustEqual(t, "credential", got.Credential, []byte("new cipher"))
	mustEqual(t, "proxy url", got.ProxyURL, []byte("new proxy"))
	mustEqual(t, "credential hash", got.CredentialHash, orig.CredentialHash)

	must(t, "clear proxy", s.SetSessionCredential(ctx(t), "s1", []byte("c2"), nil))
	got, err = s.Session(ctx(t), "s1")
	must(t, "get session", err)
	if got.ProxyURL != nil {
		t.Fatalf("proxy url %q after clearing, want nil", got.ProxyURL)
	}
}

func testSessionDelete(t *testing.T, s store.Store) {
	createSession(t, s, newSession("s1"))
	createSession(t, s, newSession("s2"))
	must(t, "delete", s.DeleteSession(ctx(t), "s1"))

	_, err := s.Session(ctx(t), "s1")
	mustIs(t, "get deleted", err, store.ErrNotFound)
	mustIs(t, "delete again", s.DeleteSession(ctx(t), "s1"), store.ErrNotFound)
	_, err = s.Session(ctx(t), "s2")
	must(t, "get other session", err)

	// The credential hash is free again.
	createSession(t, s, newSession("s1"))
}

func testSessionConcurrentWrites(t *testing.T, s store.Store) {
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*2)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				sess := newSession(fmt.Sprintf("w%d-%d", w, i))
				if err := s.CreateSession(ctx(t), &sess); err != nil {
					errs <- err
					continue
				}
				st := store.SessionState{Status: store.StatusHealthy, UsageCount: int64(i)}
				if err := s.SaveSessionState(ctx(t), sess.ID, st); err != nil {
					errs <- err
				}
				if _, err := s.Sessions(ctx(t), store.SessionFilter{Limit: 5}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent write: %v", err)
	}
	list, err := s.Sessions(ctx(t), store.SessionFilter{})
	must(t, "list sessions", err)
	mustEqual(t, "sessions written", len(list), workers*each)
}
