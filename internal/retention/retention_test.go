package retention_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/retention"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func seed(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	var gens []store.Generation
	// 7 generations at 100 days, 3 at 10 days.
	for i := range 10 {
		age := 100 * 24 * time.Hour
		if i >= 7 {
			age = 10 * 24 * time.Hour
		}
		gens = append(gens, store.Generation{ID: fmt.Sprintf("g%d", i), UserID: "u1", Status: 200,
			CreatedAt: now.Add(-age)})
	}
	if err := st.InsertGenerations(ctx, gens); err != nil {
		t.Fatal(err)
	}
	for id, s := range map[string]struct {
		status string
		age    time.Duration
	}{
		"old-revoked": {store.StatusRevoked, 8 * 24 * time.Hour},
		"old-expired": {store.StatusExpired, 30 * 24 * time.Hour},
		"new-revoked": {store.StatusRevoked, 2 * 24 * time.Hour},
		"old-healthy": {store.StatusHealthy, 300 * 24 * time.Hour},
	} {
		sess := store.Session{ID: id, Provider: store.ProviderGrok, Credential: []byte("c"),
			CredentialHash: "h-" + id, Status: s.status, CreatedAt: now.Add(-s.age)}
		if err := st.CreateSession(ctx, &sess); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRunOnce(t *testing.T) {
	st := sqlite.OpenTest(t)
	seed(t, st)
	var dropped []string
	job := retention.New(retention.Config{BatchSize: 2}, st, "scheduler", func() time.Time { return now }, nil)
	job.OnSessionsDeleted = func(ids []string) { dropped = append(dropped, ids...) }

	res, err := job.RunOnce(t.Context())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Generations != 7 || len(res.Sessions) != 2 {
		t.Fatalf("deleted %d generations and sessions %v, want 7 and 2", res.Generations, res.Sessions)
	}
	if len(dropped) != 2 {
		t.Fatalf("OnSessionsDeleted got %v, want the 2 deleted ids", dropped)
	}
	n, _ := st.CountGenerations(t.Context())
	if n != 3 {
		t.Fatalf("generations left %d, want 3", n)
	}
	left, _ := st.Sessions(t.Context(), store.SessionFilter{})
	if len(left) != 2 || left[0].ID != "new-revoked" || left[1].ID != "old-healthy" {
		t.Fatalf("sessions left %+v", left)
	}

	events, err := st.AuditEvents(t.Context(), store.AuditEventFilter{})
	if err != nil || len(events) != 1 {
		t.Fatalf("audit events %+v, %v; want one", events, err)
	}
	if e := events[0]; e.Action != "retention.run" || e.Actor != "scheduler" || e.Details["generations"] != float64(7) {
		t.Fatalf("audit event %+v", e)
	}

	// Nothing left to delete: no new audit event.
	res, err = job.RunOnce(t.Context())
	if err != nil || res.Generations != 0 || len(res.Sessions) != 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	events, _ = st.AuditEvents(t.Context(), store.AuditEventFilter{})
	if len(events) != 1 {
		t.Fatalf("audit events after an empty run: %d, want 1", len(events))
	}
}

func TestKeepForever(t *testing.T) {
	st := sqlite.OpenTest(t)
	seed(t, st)
	job := retention.New(retention.Config{GenerationsAge: -1, DeadSessionsAge: -1}, st, "cli",
		func() time.Time { return now }, nil)
	res, err := job.RunOnce(t.Context())
	if err != nil || res.Generations != 0 || len(res.Sessions) != 0 {
		t.Fatalf("run with keep forever: %+v %v", res, err)
	}
}

func TestOneRunnerAtATime(t *testing.T) {
	st := sqlite.OpenTest(t)
	unlock, ok, err := st.TryLock(t.Context(), retention.LockName)
	if err != nil || !ok {
		t.Fatalf("take lock: %v %v", ok, err)
	}
	job := retention.New(retention.Config{}, st, "scheduler", nil, nil)
	res, err := job.RunOnce(t.Context())
	if !errors.Is(err, retention.ErrLocked) || !res.Skipped {
		t.Fatalf("run while locked: %+v %v, want ErrLocked", res, err)
	}
	unlock()
	if _, err := job.RunOnce(t.Context()); err != nil {
		t.Fatalf("run after unlock: %v", err)
	}
}
