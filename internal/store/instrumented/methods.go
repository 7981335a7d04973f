package instrumented

import (
	"context"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// Ops are the op labels, one per timed Store method.
var Ops = []string{
	"migrate", "ping",
	"create_session", "session", "sessions", "save_session_state", "set_session_credential", "delete_session",
	"create_user", "user", "users", "update_user", "delete_user", "count_admins",
	"create_api_key", "api_key_by_key_id", "api_key", "api_keys", "rotated_key", "set_api_key_expiry",
	"revoke_api_key", "api_keys_revoked_since", "touch_api_keys",
	"insert_generations", "generations", "count_generations",
	"save_conversation", "conversation_by_hash",
	"append_audit_event", "audit_events", "verify_audit_chain",
	"delete_generations_before", "delete_dead_sessions_before",
	"user_data", "erase_user_data", "try_lock",
}

// The methods below call the wrapped Store's method of the same name and
// record its duration under the op label of that name in snake_case.

// Migrate applies pending migrations of the wrapped Store.
func (s *Store) Migrate(ctx context.Context) error {
	return observeErr(s, "migrate", func() error { return s.Store.Migrate(ctx) })
}

func (s *Store) Ping(ctx context.Context) error {
	return observeErr(s, "ping", func() error { return s.Store.Ping(ctx) })
}

func (s *Store) CreateSession(ctx context.Context, v *store.Session) error {
	return observeErr(s, "create_session", func() error { return s.Store.CreateSession(ctx, v) })
}

func (s *Store) Session(ctx context.Context, id string) (store.Session, error) {
	return observe(s, "session", func() (store.Session, error) { return s.Store.Session(ctx, id) })
}

func (s *Store) Sessions(ctx context.Context, f store.SessionFilter) ([]store.Session, error) {
	return observe(s, "sessions", func() ([]store.Session, error) { return s.Store.Sessions(ctx, f) })
}

func (s *Store) SaveSessionState(ctx context.Context, id string, st store.SessionState) error {
	return observeErr(s, "save_session_state", func() error { return s.Store.SaveSessionState(ctx, id, st) })
}

func (s *Store) SetSessionCredential(ctx context.Context, id string, credential, proxyURL []byte) error {
	return observeErr(s, "set_session_credential", func() error {
		return s.Store.SetSessionCredential(ctx, id, credential, proxyURL)
	})
}

func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return observeErr(s, "delete_session", func() error { return s.Store.DeleteSession(ctx, id) })
}

func (s *Store) CreateUser(ctx context.Context, u *store.User) error {
	return observeErr(s, "create_user", func() error { return s.Store.CreateUser(ctx, u) })
}

func (s *Store) User(ctx context.Context, id string) (store.User, error) {
	return observe(s, "user", func() (store.User, error) { return s.Store.User(ctx, id) })
}

func (s *Store) Users(ctx context.Context) ([]store.User, error) {
	return observe(s, "users", func() ([]store.User, error) { return s.Store.Users(ctx) })
}

func (s *Store) UpdateUser(ctx context.Context, u *store.User) error {
	return observeErr(s, "update_user", func() error { return s.Store.UpdateUser(ctx, u) })
}

func (s *Store) DeleteUser(ctx context.Context, id string) error {
	return observeErr(s, "delete_user", func() error { return s.Store.DeleteUser(ctx, id) })
}

func (s *Store) CountAdmins(ctx context.Context) (int, error) {
	return observe(s, "count_admins", func() (int, error) { return s.Store.CountAdmins(ctx) })
}

func (s *Store) CreateAPIKey(ctx context.Context, k *store.APIKey) error {
	return observeErr(s, "create_api_key", func() error { return s.Store.CreateAPIKey(ctx, k) })
}

func (s *Store) APIKeyByKeyID(ctx context.Context, keyID string) (store.APIKey, error) {
	return observe(s, "api_key_by_key_id", func() (store.APIKey, error) { return s.Store.APIKeyByKeyID(ctx, keyID) })
}

func (s *Store) APIKey(ctx context.Context, id string) (store.APIKey, error) {
	return observe(s, "api_key", func() (store.APIKey, error) { return s.Store.APIKey(ctx, id) })
}

func (s *Store) APIKeys(ctx context.Context, userID string) ([]store.APIKey, error) {
	return observe(s, "api_keys", func() ([]store.APIKey, error) { return s.Store.APIKeys(ctx, userID) })
}

func (s *Store) RotatedKey(ctx context.Context, oldID, requestID string) (store.APIKey, error) {
	return observe(s, "rotated_key", func() (store.APIKey, error) { return s.Store.RotatedKey(ctx, oldID, requestID) })
}

func (s *Store) SetAPIKeyExpiry(ctx context.Context, id string, at time.Time) error {
	return observeErr(s, "set_api_key_expiry", func() error { return s.Store.SetAPIKeyExpiry(ctx, id, at) })
}

func (s *Store) RevokeAPIKey(ctx context.Context, id string, at time.Time) error {
	return observeErr(s, "revoke_api_key", func() error { return s.Store.RevokeAPIKey(ctx, id, at) })
}

func (s *Store) APIKeysRevokedSince(ctx context.Context, t time.Time) ([]store.APIKey, error) {
	return observe(s, "api_keys_revoked_since", func() ([]store.APIKey, error) {
		return s.Store.APIKeysRevokedSince(ctx, t)
	})
}

func (s *Store) TouchAPIKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	return observeErr(s, "touch_api_keys", func() error { return s.Store.TouchAPIKeys(ctx, lastUsed) })
}

func (s *Store) InsertGenerations(ctx context.Context, gs []store.Generation) error {
	return observeErr(s, "insert_generations", func() error { return s.Store.InsertGenerations(ctx, gs) })
}

func (s *Store) Generations(ctx context.Context, f store.GenerationFilter) ([]store.Generation, error) {
	return observe(s, "generations", func() ([]store.Generation, error) { return s.Store.Generations(ctx, f) })
}

func (s *Store) CountGenerations(ctx context.Context) (int64, error) {
	return observe(s, "count_generations", func() (int64, error) { return s.Store.CountGenerations(ctx) })
}

func (s *Store) SaveConversation(ctx context.Context, c *store.Conversation) error {
	return observeErr(s, "save_conversation", func() error { return s.Store.SaveConversation(ctx, c) })
}

func (s *Store) ConversationByHash(ctx context.Context, userID, hash string) (store.Conversation, error) {
	return observe(s, "conversation_by_hash", func() (store.Conversation, error) {
		return s.Store.ConversationByHash(ctx, userID, hash)
	})
}

func (s *Store) AppendAuditEvent(ctx context.Context, e *store.AuditEvent) error {
	return observeErr(s, "append_audit_event", func() error { return s.Store.AppendAuditEvent(ctx, e) })
}

func (s *Store) AuditEvents(ctx context.Context, f store.AuditEventFilter) ([]store.AuditEvent, error) {
	return observe(s, "audit_events", func() ([]store.AuditEvent, error) { return s.Store.AuditEvents(ctx, f) })
}

func (s *Store) VerifyAuditChain(ctx context.Context) (store.AuditCheck, error) {
	return observe(s, "verify_audit_chain", func() (store.AuditCheck, error) { return s.Store.VerifyAuditChain(ctx) })
}

func (s *Store) DeleteGenerationsBefore(ctx context.Context, t time.Time, limit int) (int64, error) {
	return observe(s, "delete_generations_before", func() (int64, error) {
		return s.Store.DeleteGenerationsBefore(ctx, t, limit)
	})
}

func (s *Store) DeleteDeadSessionsBefore(ctx context.Context, t time.Time, limit int) ([]string, error) {
	return observe(s, "delete_dead_sessions_before", func() ([]string, error) {
		return s.Store.DeleteDeadSessionsBefore(ctx, t, limit)
	})
}

func (s *Store) UserData(ctx context.Context, userID string) (store.UserData, error) {
	return observe(s, "user_data", func() (store.UserData, error) { return s.Store.UserData(ctx, userID) })
}

func (s *Store) EraseUserData(ctx context.Context, userID string) (store.Erasure, error) {
	return observe(s, "erase_user_data", func() (store.Erasure, error) { return s.Store.EraseUserData(ctx, userID) })
}

// TryLock times taking the lock, not holding it.
func (s *Store) TryLock(ctx context.Context, name string) (func(), bool, error) {
	type result struct {
		unlock func()
		ok     bool
	}
	r, err := observe(s, "try_lock", func() (result, error) {
		unlock, ok, err := s.Store.TryLock(ctx, name)
		return result{unlock, ok}, err
	})
	return r.unlock, r.ok, err
}
