package instrumented_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/instrumented"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

func families(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// sample returns the metric of family name whose label has value.
func sample(t *testing.T, mf *dto.MetricFamily, label, value string) *dto.Metric {
	t.Helper()
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m
			}
		}
	}
	t.Fatalf("%s has no sample with %s=%q", mf.GetName(), label, value)
	return nil
}

func TestTimesCalls(t *testing.T) {
	reg := prometheus.NewRegistry()
	raw := sqlite.OpenTest(t)
	st := instrumented.New(raw, reg, instrumented.Options{MaxConns: 7})
	ctx := context.Background()

	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	u := store.User{ID: "usr_1", Name: "one", Role: store.RoleUser, Active: true, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateUser(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(ctx, &u); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateUser: %v, want ErrConflict", err)
	}
	if _, err := st.User(ctx, "usr_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("User(missing): %v, want ErrNotFound", err)
	}
	if got, err := st.User(ctx, "usr_1"); err != nil || got.Name != "one" {
		t.Fatalf("User: %+v %v", got, err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, _ = st.Users(canceled)

	fams := families(t, reg)
	dur := fams["grokproxy_db_query_duration_seconds"]
	if dur == nil {
		t.Fatal("grokproxy_db_query_duration_seconds is not exported")
	}
	for op, want := range map[string]uint64{"ping": 1, "create_user": 2, "user": 2, "sessions": 0} {
		if got := sample(t, dur, "op", op).GetHistogram().GetSampleCount(); got != want {
			t.Errorf("duration count of %s = %d, want %d", op, got, want)
		}
	}
	errs := fams["grokproxy_db_query_errors_total"]
	for _, op := range []string{"create_user", "user", "users", "ping"} {
		if got := sample(t, errs, "op", op).GetCounter().GetValue(); got != 0 {
			t.Errorf("errors of %s = %v, want 0 (conflict, not found and cancel are answers)", op, got)
		}
	}
	if n := len(dur.GetMetric()); n != len(instrumented.Ops) {
		t.Errorf("duration has %d op samples, want one per op (%d)", n, len(instrumented.Ops))
	}
	pool := fams["grokproxy_db_pool_connections"]
	// The SQLite store reports its own pools, which win over MaxConns.
	if got, want := sample(t, pool, "state", "max").GetGauge().GetValue(), float64(raw.PoolStats()["max"]); got != want {
		t.Errorf("pool max = %v, want the store's %v", got, want)
	}
	if got := sample(t, pool, "state", "in_use").GetGauge().GetValue(); got != 0 {
		t.Errorf("pool in_use at rest = %v, want 0", got)
	}
}

func TestCountsFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	base := sqlite.OpenTest(t)
	st := instrumented.New(base, reg, instrumented.Options{})
	if err := base.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Users(context.Background()); err == nil {
		t.Fatal("Users on a closed store succeeded")
	}
	got := sample(t, families(t, reg)["grokproxy_db_query_errors_total"], "op", "users").GetCounter().GetValue()
	if got != 1 {
		t.Errorf("errors of users = %v, want 1", got)
	}
}

type statsStore struct{ store.Store }

func (statsStore) PoolStats() map[string]int {
	return map[string]int{"in_use": 3, "idle": 2, "max": 20}
}

func TestPoolStatsFromBackend(t *testing.T) {
	reg := prometheus.NewRegistry()
	instrumented.New(statsStore{sqlite.OpenTest(t)}, reg, instrumented.Options{MaxConns: 5})
	pool := families(t, reg)["grokproxy_db_pool_connections"]
	for state, want := range map[string]float64{"in_use": 3, "idle": 2, "max": 20} {
		if got := sample(t, pool, "state", state).GetGauge().GetValue(); got != want {
			t.Errorf("pool %s = %v, want %v", state, got, want)
		}
	}
}

// TestEveryMethodHasAnOp fails when store.Store gains a method that this
// package does not time yet.
func TestEveryMethodHasAnOp(t *testing.T) {
	iface := reflect.TypeFor[store.Store]()
	for i := range iface.NumMethod() {
		name := iface.Method(i).Name
		if name == "Close" {
			continue
		}
		if op := snake(name); !slices.Contains(instrumented.Ops, op) {
			t.Errorf("store method %s has no op %q: add a timed wrapper", name, op)
		}
	}
}

func snake(name string) string {
	var b strings.Builder
	r := []rune(name)
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) {
			prevLower := unicode.IsLower(r[i-1])
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || (unicode.IsUpper(r[i-1]) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}
