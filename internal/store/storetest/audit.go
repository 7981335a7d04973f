package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// RawExecer runs a statement around the store's API. Tests use it to edit
// rows the way an intruder with database access would.
type RawExecer interface {
	ExecRaw(ctx context.Context, query string, args ...any) error
}

func newEvent(i int) store.AuditEvent {
	return store.AuditEvent{
		At: at(time.Duration(i) * time.Second), Actor: "usr_admin", Action: "session.create",
		Target: fmt.Sprintf("s%d", i), ClientIP: "127.0.0.1", RequestID: fmt.Sprintf("req-%d", i),
		Details: map[string]any{"status": 201, "route": "POST /admin/sessions", "n": i},
	}
}

func appendEvents(t *testing.T, s store.Store, n int) []store.AuditEvent {
	t.Helper()
	var out []store.AuditEvent
	for i := range n {
		e := newEvent(i)
		must(t, "append", s.AppendAuditEvent(ctx(t), &e))
		out = append(out, e)
	}
	return out
}

func testAuditRoundTrip(t *testing.T, s store.Store) {
	events := appendEvents(t, s, 3)
	if events[0].PrevHash != "" || events[0].Hash == "" || events[0].ID == "" {
		t.Fatalf("first event: %+v", events[0])
	}
	for i := 1; i < len(events); i++ {
		mustEqual(t, "prev hash links", events[i].PrevHash, events[i-1].Hash)
		if events[i].Seq <= events[i-1].Seq {
			t.Fatalf("seq not increasing: %d after %d", events[i].Seq, events[i-1].Seq)
		}
	}
	list, err := s.AuditEvents(ctx(t), store.AuditEventFilter{})
	must(t, "list", err)
	mustEqual(t, "events newest first", list,
		[]store.AuditEvent{events[2], events[1], events[0]})
	mustEqual(t, "details number", list[0].Details["status"], any(float64(201)))

	empty := store.AuditEvent{Action: "circuit.reset"}
	must(t, "append without details", s.AppendAuditEvent(ctx(t), &empty))
	got, err := s.AuditEvents(ctx(t), store.AuditEventFilter{Limit: 1})
	must(t, "list newest", err)
	mustEqual(t, "event without details", got, []store.AuditEvent{empty})
}

func testAuditPaging(t *testing.T, s store.Store) {
	events := appendEvents(t, s, 5)
	page, err := s.AuditEvents(ctx(t), store.AuditEventFilter{Limit: 2})
	must(t, "page 1", err)
	mustEqual(t, "page 1 targets", auditTargets(page), []string{"s4", "s3"})
	page, err = s.AuditEvents(ctx(t), store.AuditEventFilter{Limit: 2, BeforeSeq: page[1].Seq})
	must(t, "page 2", err)
	mustEqual(t, "page 2 targets", auditTargets(page), []string{"s2", "s1"})
	page, err = s.AuditEvents(ctx(t), store.AuditEventFilter{Limit: 2, BeforeSeq: page[1].Seq})
	must(t, "page 3", err)
	mustEqual(t, "page 3", page, []store.AuditEvent{events[0]})
}

func auditTargets(list []store.AuditEvent) []string {
	out := []string{}
	for _, e := range list {
		out = append(out, e.Target)
	}
	return out
}

func testAuditVerifyIntact(t *testing.T, s store.Store) {
	check, err := s.VerifyAuditChain(ctx(t))
	must(t, "verify empty", err)
	mustEqual(t, "empty chain", check, store.AuditCheck{})

	// More rows than one verification page.
	appendEvents(t, s, 1203)
	check, err = s.VerifyAuditChain(ctx(t))
	must(t, "verify", err)
	mustEqual(t, "intact chain", check, store.AuditCheck{Checked: 1203})
}

func testAuditVerifyEdited(t *testing.T, s store.Store) {
	raw := rawExecer(t, s)
	events := appendEvents(t, s, 4)
	must(t, "edit row", raw.ExecRaw(ctx(t), `UPDATE audit_events SET actor = 'someone-else' WHERE id = $1`,
		events[1].ID))
	check, err := s.VerifyAuditChain(ctx(t))
	must(t, "verify", err)
	mustEqual(t, "broken row", [2]any{check.BrokenSeq, check.BrokenID}, [2]any{events[1].Seq, events[1].ID})
	mustEqual(t, "rows read", check.Checked, int64(2))
	if !strings.Contains(check.Reason, "content") || check.Intact() {
		t.Fatalf("reason %q, want a content mismatch", check.Reason)
	}
}

func testAuditVerifyDeleted(t *testing.T, s store.Store) {
	raw := rawExecer(t, s)
	events := appendEvents(t, s, 4)
	must(t, "delete row", raw.ExecRaw(ctx(t), `DELETE FROM audit_events WHERE id = $1`, events[1].ID))
	check, err := s.VerifyAuditChain(ctx(t))
	must(t, "verify", err)
	mustEqual(t, "broken row", check.BrokenID, events[2].ID)
	if !strings.Contains(check.Reason, "prev_hash") {
		t.Fatalf("reason %q, want a prev_hash mismatch", check.Reason)
	}
}

// testAuditConcurrentAppend appends from many goroutines; the chain must
// stay one line.
func testAuditConcurrentAppend(t *testing.T, s store.Store) {
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := newEvent(w*each + i)
				if err := s.AppendAuditEvent(context.Background(), &e); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	check, err := s.VerifyAuditChain(ctx(t))
	must(t, "verify", err)
	mustEqual(t, "chain after concurrent appends", check, store.AuditCheck{Checked: writers * each})
}

func rawExecer(t *testing.T, s store.Store) RawExecer {
	t.Helper()
	raw, ok := s.(RawExecer)
	if !ok {
		t.Fatalf("%T does not implement storetest.RawExecer", s)
	}
	return raw
}
