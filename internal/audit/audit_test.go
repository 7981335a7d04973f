package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/grokproxy/grokproxy/internal/audit"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/postgres"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

// waitCeiling bounds every poll. The writer normally meets the condition
// within a few flush intervals.
const waitCeiling = 10 * time.Second

var errOutage = errors.New("simulated store outage")

// flakyStore wraps a real store. While down, InsertGenerations and Ping fail.
// It keeps the ids of every batch the store accepted, in call order.
type flakyStore struct {
	store.Store
	down atomic.Bool

	mu       sync.Mutex // guards inserted
	inserted []string
}

func (f *flakyStore) InsertGenerations(ctx context.Context, gs []store.Generation) error {
	if f.down.Load() {
		return errOutage
	}
	if err := f.Store.InsertGenerations(ctx, gs); err != nil {
		return err
	}
	f.mu.Lock()
	for _, g := range gs {
		f.inserted = append(f.inserted, g.ID)
	}
	f.mu.Unlock()
	return nil
}

func (f *flakyStore) Ping(ctx context.Context) error {
	if f.down.Load() {
		return errOutage
	}
	return f.Store.Ping(ctx)
}

// firstInserts returns the accepted ids in the order the store first saw
// them, and the number of ids seen more than once (replays).
func (f *flakyStore) firstInserts() (order []string, repeats int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := make(map[string]bool)
	for _, id := range f.inserted {
		if seen[id] {
			repeats++
			continue
		}
		seen[id] = true
		order = append(order, id)
	}
	return order, repeats
}

// inserted returns the number of distinct ids the store accepted. Tests
// that then read firstInserts wait on it rather than on the row count,
// which the store reaches before InsertGenerations records the ids.
func inserted(f *flakyStore) int {
	order, _ := f.firstInserts()
	return len(order)
}

func newFlaky(t *testing.T) *flakyStore {
	return &flakyStore{Store: sqlite.OpenTest(t)}
}

func fastConfig(t *testing.T) audit.Config {
	return audit.Config{
		QueueSize:     1000,
		BatchSize:     50,
		FlushInterval: 20 * time.Millisecond,
		SpoolPath:     filepath.Join(t.TempDir(), "audit.spool"),
		RetryInterval: 50 * time.Millisecond,
	}
}

// start runs w until the test ends, then closes it.
func start(t *testing.T, w *audit.Writer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		closeCtx, stop := context.WithTimeout(context.Background(), waitCeiling)
		defer stop()
		w.Close(closeCtx)
		cancel()
		<-done
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitCeiling)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitCeiling, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func count(t *testing.T, st store.Store) int64 {
	t.Helper()
	n, err := st.CountGenerations(context.Background())
	if err != nil {
		t.Fatalf("count generations: %v", err)
	}
	return n
}

func gen(i int, user string) store.Generation {
	return store.Generation{
		ID:        fmt.Sprintf("gen_test_%05d", i),
		RequestID: fmt.Sprintf("req_%05d", i),
		UserID:    user,
		Model:     "grok-4",
		Prompt:    strings.Repeat("p", 100),
		Response:  "answer",
		Status:    200,
		CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
	}
}

func recordN(w *audit.Writer, from, n int, user string) []string {
	var ids []string
	for i := from; i < from+n; i++ {
		g := gen(i, user)
		w.Record(g)
		ids = append(ids, g.ID)
	}
	return ids
}

func TestRecordReachesStore(t *testing.T) {
	st := newFlaky(t)
	cfg := fastConfig(t)
	cfg.FlushInterval = 0 // the default, 200ms
	w := audit.New(cfg, st, nil, nil)
	start(t, w)

	recordN(w, 0, 7, "u1")
	// The writer counts a batch after the store has it, so wait on the
	// counters and then check the store.
	waitFor(t, "7 records written and none queued", func() bool {
		s := w.Stats()
		return s.Written == 7 && s.Queued == 0
	})
	if got := count(t, st); got != 7 {
		t.Errorf("store holds %d generations; want 7", got)
	}
}

func TestRecordSetsIDAndTime(t *testing.T) {
	st := newFlaky(t)
	w := audit.New(fastConfig(t), st, nil, nil)
	start(t, w)

	before := time.Now().Add(-time.Second)
	w.Record(store.Generation{UserID: "u1", RequestID: "req_a"})
	w.Record(store.Generation{UserID: "u1", RequestID: "req_b"})
	waitFor(t, "2 generations", func() bool { return count(t, st) == 2 })

	gs, err := st.Generations(context.Background(), store.GenerationFilter{UserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 {
		t.Fatalf("got %d generations; want 2", len(gs))
	}
	if gs[0].ID == gs[1].ID {
		t.Errorf("both records got id %q", gs[0].ID)
	}
	for _, g := range gs {
		if !strings.HasPrefix(g.ID, "gen_") {
			t.Errorf("id %q lacks the gen_ prefix", g.ID)
		}
		if g.CreatedAt.Before(before) {
			t.Errorf("CreatedAt %v of %q is not set to now", g.CreatedAt, g.RequestID)
		}
	}
}

func TestOutageSpoolsThenReplaysInOrder(t *testing.T) {
	st := newFlaky(t)
	st.down.Store(true)
	w := audit.New(fastConfig(t), st, nil, nil)
	start(t, w)

	const n = 1234
	want := recordN(w, 0, n, "u1")
	waitFor(t, "all records spooled", func() bool { return w.Stats().SpoolRecords == n })
	if got := count(t, st); got != 0 {
		t.Fatalf("store holds %d generations during the outage; want 0", got)
	}
	if s := w.Stats(); s.SpoolBytes == 0 || s.Spooled != n || s.Queued != 0 {
		t.Fatalf("during outage: %+v; want %d spooled, none queued", s, n)
	}

	// Records that arrive while the spool waits must land after it.
	st.down.Store(false)
	want = append(want, recordN(w, n, 10, "u1")...)
	waitFor(t, "every record in the store", func() bool { return inserted(st) == len(want) })

	order, _ := st.firstInserts()
	if len(order) != len(want) {
		t.Fatalf("store accepted %d distinct ids; want %d", len(order), len(want))
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("insert %d is %q; want %q", i, order[i], want[i])
		}
	}
	waitFor(t, "an empty spool", func() bool { s := w.Stats(); return s.SpoolRecords == 0 && s.SpoolBytes == 0 })
	if s := w.Stats(); s.Written != int64(len(want)) || s.Dropped != 0 {
		t.Errorf("after replay: %+v; want %d written, 0 dropped", s, len(want))
	}
}

func TestCloseFlushesQueue(t *testing.T) {
	st := newFlaky(t)
	cfg := fastConfig(t)
	cfg.FlushInterval = time.Hour
	w := audit.New(cfg, st, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)

	recordN(w, 0, 9, "u1")
	closeCtx, stop := context.WithTimeout(context.Background(), waitCeiling)
	defer stop()
	if err := w.Close(closeCtx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := count(t, st); got != 9 {
		t.Errorf("store holds %d generations after Close; want 9", got)
	}
	if err := w.Admit(); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Admit after Close = %v; want ErrClosed", err)
	}
}

func TestCloseWithoutRunFlushesQueue(t *testing.T) {
	st := newFlaky(t)
	w := audit.New(fastConfig(t), st, nil, nil)
	recordN(w, 0, 3, "u1")
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := count(t, st); got != 3 {
		t.Errorf("store holds %d generations; want 3", got)
	}
}

func TestRecordAfterCloseIsSaved(t *testing.T) {
	st := newFlaky(t)
	w := audit.New(fastConfig(t), st, nil, nil)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Record(gen(1, "u1"))
	if got := count(t, st); got != 1 {
		t.Errorf("store holds %d generations; want 1", got)
	}
}

func TestSpoolFromEarlierProcessReplayedAtStart(t *testing.T) {
	cfg := fastConfig(t)
	down := newFlaky(t)
	down.down.Store(true)
	first := audit.New(cfg, down, nil, nil)
	want := recordN(first, 0, 120, "u1")
	if err := first.Close(context.Background()); err != nil {
		t.Fatalf("Close with the store down: %v", err)
	}
	if s := first.Stats(); s.Spooled != 120 {
		t.Fatalf("first writer spooled %d records; want 120", s.Spooled)
	}

	st := newFlaky(t)
	second := audit.New(cfg, st, nil, nil)
	if got := second.Stats().SpoolRecords; got != 120 {
		t.Fatalf("second writer sees %d spooled records; want 120", got)
	}
	start(t, second)
	waitFor(t, "the earlier spool in the store", func() bool { return inserted(st) == 120 })
	order, _ := st.firstInserts()
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("insert %d is %q; want %q", i, order[i], want[i])
		}
	}
}

func TestRejectPolicyFailsAdmitWhenSpoolFull(t *testing.T) {
	st := newFlaky(t)
	st.down.Store(true)
	cfg := fastConfig(t)
	cfg.QueueSize = 4
	cfg.BatchSize = 2
	cfg.SpoolMaxBytes = 2048 // a handful of records
	w := audit.New(cfg, st, nil, nil)
	start(t, w)

	admitted := 0
	var admitErr error
	deadline := time.Now().Add(waitCeiling)
	for admitErr == nil && time.Now().Before(deadline) {
		if admitErr = w.Admit(); admitErr == nil {
			w.Record(gen(admitted, "u1"))
			admitted++
			time.Sleep(2 * time.Millisecond)
		}
	}
	if !errors.Is(admitErr, audit.ErrFull) {
		t.Fatalf("Admit = %v after %d records; want ErrFull", admitErr, admitted)
	}
	if s := w.Stats(); s.Dropped != 0 || s.SpoolRecords == 0 || s.Queued < cfg.QueueSize {
		t.Fatalf("with a full spool: %+v; want no drop, a spool and a full queue", s)
	}

	st.down.Store(false)
	waitFor(t, "every admitted record in the store", func() bool {
		return inserted(st) == admitted && w.Stats().Written == int64(admitted)
	})
	if err := w.Admit(); err != nil {
		t.Errorf("Admit after recovery = %v; want nil", err)
	}
	if _, repeats := st.firstInserts(); w.Stats().Written != int64(admitted) {
		t.Errorf("Written = %d; want %d (repeats %d)", w.Stats().Written, admitted, repeats)
	}
}

func TestDropOldestPolicyDropsOldest(t *testing.T) {
	st := newFlaky(t)
	st.down.Store(true)
	cfg := fastConfig(t)
	cfg.BatchSize = 2
	cfg.SpoolMaxBytes = 4096
	cfg.FullPolicy = audit.PolicyDropOldest
	w := audit.New(cfg, st, nil, nil)
	start(t, w)

	const n = 100
	ids := make([]string, 0, n)
	for i := range n {
		if err := w.Admit(); err != nil {
			t.Fatalf("Admit under drop_oldest = %v; want nil", err)
		}
		ids = append(ids, recordN(w, i, 1, "u1")...)
	}
	waitFor(t, "an empty queue", func() bool { return w.Stats().Queued == 0 })
	s := w.Stats()
	if s.Dropped == 0 {
		t.Fatalf("nothing dropped with %d records in a %d-byte spool: %+v", n, cfg.SpoolMaxBytes, s)
	}
	if s.SpoolBytes > cfg.SpoolMaxBytes {
		t.Errorf("spool is %d bytes; cap %d", s.SpoolBytes, cfg.SpoolMaxBytes)
	}

	st.down.Store(false)
	kept := int64(n) - s.Dropped
	waitFor(t, "the kept records in the store", func() bool { return int64(inserted(st)) == kept })
	order, _ := st.firstInserts()
	if order[len(order)-1] != ids[n-1] {
		t.Errorf("last stored id = %q; want the newest %q", order[len(order)-1], ids[n-1])
	}
	if order[0] == ids[0] {
		t.Errorf("the oldest record %q was kept; want it dropped", ids[0])
	}
	for i := range order {
		if want := ids[n-len(order)+i]; order[i] != want {
			t.Fatalf("stored %d is %q; want %q (the newest records, in order)", i, order[i], want)
		}
	}
}

func TestEraseRemovesQueuedAndSpooled(t *testing.T) {
	cfg := fastConfig(t)
	down := newFlaky(t)
	down.down.Store(true)
	first := audit.New(cfg, down, nil, nil)
	recordN(first, 0, 3, "alice")
	recordN(first, 3, 3, "bob")
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The second writer is not running yet, so its records stay queued.
	st := newFlaky(t)
	w := audit.New(cfg, st, nil, nil)
	recordN(w, 6, 2, "alice")
	recordN(w, 8, 2, "bob")
	n, err := w.Erase("alice")
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if n != 5 {
		t.Errorf("Erase removed %d records; want 5", n)
	}
	if s := w.Stats(); s.Queued != 2 || s.SpoolRecords != 3 {
		t.Errorf("after Erase: %+v; want 2 queued, 3 spooled", s)
	}

	start(t, w)
	waitFor(t, "bob's records in the store", func() bool { return count(t, st) == 5 })
	gs, err := st.Generations(context.Background(), store.GenerationFilter{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 0 {
		t.Errorf("store holds %d of alice's records; want 0", len(gs))
	}
}

func TestMetricsCountResults(t *testing.T) {
	st := newFlaky(t)
	reg := prometheus.NewRegistry()
	w := audit.New(fastConfig(t), st, reg, nil)

	for _, result := range []string{"written", "spooled", "dropped", "rejected"} {
		if got := recordsTotal(t, reg, result); got != 0 {
			t.Errorf("records_total{result=%q} at start = %v; want 0", result, got)
		}
	}

	start(t, w)
	recordN(w, 0, 4, "u1")
	waitFor(t, "4 records counted as written", func() bool { return recordsTotal(t, reg, "written") == 4 })
	if got := count(t, st); got != 4 {
		t.Errorf("store holds %d generations; want 4", got)
	}
	for _, name := range []string{
		"grokproxy_audit_queue_depth", "grokproxy_audit_spool_bytes",
		"grokproxy_audit_spool_records", "grokproxy_audit_flush_duration_seconds",
	} {
		if n := seriesCount(t, reg, name); n != 1 {
			t.Errorf("%s has %d series; want 1", name, n)
		}
	}
}

// recordsTotal returns the value of grokproxy_audit_records_total{result}.
func recordsTotal(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "grokproxy_audit_records_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no grokproxy_audit_records_total{result=%q}", result)
	return 0
}

func seriesCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}

// TestStoreRejectedRecordIsSetAside runs against PostgreSQL, which rejects a
// NUL byte in a text column. Such a record goes to the rejected file, and the
// records around it reach the store, written directly or replayed from the
// spool after an outage.
func TestStoreRejectedRecordIsSetAside(t *testing.T) {
	for _, outage := range []bool{false, true} {
		t.Run(fmt.Sprintf("outage=%v", outage), func(t *testing.T) {
			st := &flakyStore{Store: postgres.OpenTest(t)}
			st.down.Store(outage)
			cfg := fastConfig(t)
			w := audit.New(cfg, st, nil, nil)
			start(t, w)

			bad := gen(2, "u1")
			bad.FinishReason = "stop\x00"
			for _, g := range []store.Generation{gen(1, "u1"), bad, gen(3, "u1")} {
				w.Record(g)
			}
			if outage {
				waitFor(t, "all records spooled", func() bool { return w.Stats().SpoolRecords == 3 })
				st.down.Store(false)
			}
			waitFor(t, "two records written and one rejected", func() bool {
				s := w.Stats()
				return s.Written == 2 && s.Rejected == 1
			})

			list, err := st.Generations(context.Background(), store.GenerationFilter{})
			if err != nil {
				t.Fatalf("list generations: %v", err)
			}
			var ids []string
			for _, g := range list {
				ids = append(ids, g.ID)
			}
			if len(ids) != 2 || ids[0] != gen(3, "u1").ID || ids[1] != gen(1, "u1").ID {
				t.Errorf("stored ids = %v; want the two good records", ids)
			}
			info, err := os.Stat(cfg.SpoolPath + ".rejected")
			if err != nil {
				t.Fatalf("rejected file: %v", err)
			}
			if info.Mode().Perm() != 0o600 {
				t.Errorf("rejected file mode = %v; want 0600", info.Mode().Perm())
			}
			kept, err := os.ReadFile(cfg.SpoolPath + ".rejected")
			if err != nil {
				t.Fatalf("read rejected file: %v", err)
			}
			if !bytes.Contains(kept, []byte(bad.RequestID)) || bytes.Contains(kept, []byte(gen(1, "u1").RequestID)) {
				t.Errorf("rejected file = %q; want the bad record only", kept)
			}
			waitFor(t, "an empty spool", func() bool { return w.Stats().SpoolRecords == 0 })
		})
	}
}
