// Package storetest is the conformance suite that every store.Store
// implementation runs from its own tests:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t testing.TB) store.Store { return sqlite.OpenTest(t) })
//	}
package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// Run runs the suite. open must return an empty, migrated store that is
// released when t ends. Each subtest calls it once.
func Run(t *testing.T, open func(t testing.TB) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Migrate/Twice", testMigrateTwice},
		{"Ping", testPing},
		{"Session/RoundTrip", testSessionRoundTrip},
		{"Session/Defaults", testSessionDefaults},
		{"Session/Conflict", testSessionConflict},
		{"Session/NotFound", testSessionNotFound},
		{"Session/Filter", testSessionFilter},
		{"Session/Paging", testSessionPaging},
		{"Session/SaveState", testSessionSaveState},
		{"Session/SetCredential", testSessionSetCredential},
		{"Session/Delete", testSessionDelete},
		{"Session/ConcurrentWrites", testSessionConcurrentWrites},
		{"User/RoundTrip", testUserRoundTrip},
		{"User/List", testUserList},
		{"User/Update", testUserUpdate},
		{"User/Delete", testUserDelete},
		{"User/CountAdmins", testCountAdmins},
		{"APIKey/RoundTrip", testKeyRoundTrip},
		{"APIKey/Conflict", testKeyConflict},
		{"APIKey/List", testKeyList},
		{"APIKey/Rotation", testKeyRotation},
		{"APIKey/RevokedSince", testKeyRevokedSince},
		{"APIKey/Touch", testKeyTouch},
		{"Generation/RoundTrip", testGenerationRoundTrip},
		{"Generation/Idempotent", testGenerationIdempotent},
		{"Generation/LargeBatch", testGenerationLargeBatch},
		{"Generation/List", testGenerationList},
		{"Conversation/RoundTrip", testConversationRoundTrip},
		{"Conversation/Update", testConversationUpdate},
		{"Conversation/PerUser", testConversationPerUser},
		{"Audit/RoundTrip", testAuditRoundTrip},
		{"Audit/Paging", testAuditPaging},
		{"Audit/VerifyIntact", testAuditVerifyIntact},
		{"Audit/VerifyEdited", testAuditVerifyEdited},
		{"Audit/VerifyDeleted", testAuditVerifyDeleted},
		{"Audit/ConcurrentAppend", testAuditConcurrentAppend},
		{"Retention/Generations", testDeleteGenerationsBefore},
		{"Retention/DeadSessions", testDeleteDeadSessions},
		{"UserData/ExportErase", testUserDataAndErase},
		{"TryLock", testTryLock},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// base is a fixed time in whole milliseconds, the precision every store
// keeps.
var base = time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)

// at returns base moved by d.
func at(d time.Duration) time.Time { return base.Add(d) }

func ctx(t *testing.T) context.Context { return t.Context() }

func mustEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func mustIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %q", what, err, target)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func testMigrateTwice(t *testing.T, s store.Store) {
	u := &store.User{ID: "u1", Name: "ann", Active: true}
	must(t, "create user", s.CreateUser(ctx(t), u))
	must(t, "migrate again", s.Migrate(ctx(t)))
	got, err := s.User(ctx(t), "u1")
	must(t, "get user after migrate", err)
	mustEqual(t, "user name", got.Name, "ann")
}

func testPing(t *testing.T, s store.Store) {
	must(t, "ping", s.Ping(ctx(t)))
}
