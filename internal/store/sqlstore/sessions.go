package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/grokproxy/grokproxy/internal/store"
)

const sessionColumns = `id, provider, credential, credential_hash, proxy_url, label,
	status, status_reason, cooldown_until, weight, max_concurrency,
	created_at, updated_at, last_used_at, expires_at, last_health_check_at,
	usage_count, success_count, failure_count, metadata`

// CreateSession inserts s. An empty ID gets a new UUID, a zero CreatedAt
// the current time and an empty Status StatusHealthy, all written back
// to s. A duplicate ID or credential hash returns an error wrapping
// store.ErrConflict.
func (s *Store) CreateSession(ctx context.Context, sess *store.Session) error {
	if sess.ID == "" {
		sess.ID = newID()
	}
	if sess.Status == "" {
		sess.Status = store.StatusHealthy
	}
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = s.Now()
	}
	sess.UpdatedAt = sess.CreatedAt
	meta, err := json.Marshal(sess.Metadata)
	if err != nil {
		return fmt.Errorf("encode metadata of session %q: %w", sess.ID, err)
	}
	b := s.b
	_, err = b.Writer().Exec(ctx, `INSERT INTO sessions (`+sessionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
			$17, $18, $19, $20)`,
		sess.ID, sess.Provider, sess.Credential, sess.CredentialHash, sess.ProxyURL,
		sess.Label, sess.Status, sess.StatusReason, b.TimeArg(sess.CooldownUntil),
		sess.Weight, sess.MaxConcurrency,
		b.TimeArg(sess.CreatedAt), b.TimeArg(sess.UpdatedAt), b.TimeArg(sess.LastUsedAt),
		b.TimeArg(sess.ExpiresAt), b.TimeArg(sess.LastHealthCheckAt),
		sess.UsageCount, sess.SuccessCount, sess.FailureCount, string(meta))
	if err != nil {
		return fmt.Errorf("insert session %q: %w", sess.ID, b.MapError(err))
	}
	return nil
}

// Session returns the session with the given id.
func (s *Store) Session(ctx context.Context, id string) (store.Session, error) {
	row := s.b.Reader().QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id = $1`, id)
	sess, err := s.scanSession(row)
	if err != nil {
		return store.Session{}, fmt.Errorf("session %q: %w", id, err)
	}
	return sess, nil
}

// Sessions lists the sessions that match f, ordered by id.
func (s *Store) Sessions(ctx context.Context, f store.SessionFilter) ([]store.Session, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if f.Status != "" {
		add("status =", f.Status)
	}
	if f.Provider != "" {
		add("provider =", f.Provider)
	}
	if f.After != "" {
		add("id >", f.After)
	}
	q := `SELECT ` + sessionColumns + ` FROM sessions`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id"
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += " LIMIT $" + strconv.Itoa(len(args))
	}
	rows, err := s.b.Reader().Query(ctx, q, args...)
	list, err := scanAll(rows, err, s.scanSession)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return list, nil
}

// SaveSessionState overwrites the mutable fields of session id with st and
// sets its UpdatedAt to now.
func (s *Store) SaveSessionState(ctx context.Context, id string, st store.SessionState) error {
	meta, err := json.Marshal(st.Metadata)
	if err != nil {
		return fmt.Errorf("encode metadata of session %q: %w", id, err)
	}
	b := s.b
	n, err := b.Writer().Exec(ctx, `UPDATE sessions SET status = $2, status_reason = $3,
		cooldown_until = $4, last_used_at = $5, last_health_check_at = $6,
		usage_count = $7, success_count = $8, failure_count = $9, metadata = $10,
		updated_at = $11
		WHERE id = $1`,
		id, st.Status, st.StatusReason, b.TimeArg(st.CooldownUntil),
		b.TimeArg(st.LastUsedAt), b.TimeArg(st.LastHealthCheckAt),
		st.UsageCount, st.SuccessCount, st.FailureCount, string(meta), b.TimeArg(s.Now()))
	return checkWrite(n, err, b, "save state of session %q", id)
}

// SetSessionCredential replaces the credential and proxy URL ciphertexts
// of session id. A nil proxyURL clears it.
func (s *Store) SetSessionCredential(ctx context.Context, id string, credential, proxyURL []byte) error {
	n, err := s.b.Writer().Exec(ctx, `UPDATE sessions SET credential = $2, proxy_url = $3,
		updated_at = $4 WHERE id = $1`,
		id, credential, proxyURL, s.b.TimeArg(s.Now()))
	return checkWrite(n, err, s.b, "set credential of session %q", id)
}

// DeleteSession deletes session id.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	n, err := s.b.Writer().Exec(ctx, `DELETE FROM sessions WHERE id = $1`, id)
	return checkWrite(n, err, s.b, "delete session %q", id)
}

func (s *Store) scanSession(row Row) (store.Session, error) {
	var sess store.Session
	var meta []byte
	b := s.b
	err := row.Scan(&sess.ID, &sess.Provider, &sess.Credential, &sess.CredentialHash,
		&sess.ProxyURL, &sess.Label, &sess.Status, &sess.StatusReason,
		b.TimeDest(&sess.CooldownUntil), &sess.Weight, &sess.MaxConcurrency,
		b.TimeDest(&sess.CreatedAt), b.TimeDest(&sess.UpdatedAt), b.TimeDest(&sess.LastUsedAt),
		b.TimeDest(&sess.ExpiresAt), b.TimeDest(&sess.LastHealthCheckAt),
		&sess.UsageCount, &sess.SuccessCount, &sess.FailureCount, &meta)
	if err != nil {
		return store.Session{}, err
	}
	if err := json.Unmarshal(meta, &sess.Metadata); err != nil {
		return store.Session{}, fmt.Errorf("decode metadata of session %q: %w", sess.ID, err)
	}
	return sess, nil
}

// checkWrite wraps the result of a statement that must change one row:
// an error from the backend, or store.ErrNotFound when n is 0.
func checkWrite(n int64, err error, b Backend, format string, id string) error {
	if err != nil {
		return fmt.Errorf(format+": %w", id, b.MapError(err))
	}
	if n == 0 {
		return fmt.Errorf(format+": %w", id, store.ErrNotFound)
	}
	return nil
}
