package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

const keyColumns = `id, user_id, key_id, name, prefix, secret_hash, created_at,
	last_used_at, expires_at, revoked_at, rotated_from, rotation_request_id`

// CreateAPIKey inserts k. An empty ID gets a new UUID and a zero CreatedAt
// the current time, both written back to k. A duplicate ID or KeyID, or
// a second key with the same RotatedFrom and non-empty RotationRequestID,
// returns an error wrapping store.ErrConflict. A UserID with no user
// returns an error wrapping store.ErrNotFound.
func (s *Store) CreateAPIKey(ctx context.Context, k *store.APIKey) error {
	if k.ID == "" {
		k.ID = newID()
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.Now()
	}
	b := s.b
	_, err := b.Writer().Exec(ctx, `INSERT INTO api_keys (`+keyColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		k.ID, k.UserID, k.KeyID, k.Name, k.Prefix, k.SecretHash, b.TimeArg(k.CreatedAt),
		b.TimeArg(k.LastUsedAt), b.TimeArg(k.ExpiresAt), b.TimeArg(k.RevokedAt),
		k.RotatedFrom, k.RotationRequestID)
	if err != nil {
		return fmt.Errorf("insert api key %q: %w", k.ID, b.MapError(err))
	}
	return nil
}

// APIKeyByKeyID returns the key whose public key id is keyID.
func (s *Store) APIKeyByKeyID(ctx context.Context, keyID string) (store.APIKey, error) {
	row := s.b.Reader().QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE key_id = $1`, keyID)
	k, err := s.scanKey(row)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("api key with key id %q: %w", keyID, err)
	}
	return k, nil
}

// APIKey returns the key with the given id.
func (s *Store) APIKey(ctx context.Context, id string) (store.APIKey, error) {
	row := s.b.Reader().QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1`, id)
	k, err := s.scanKey(row)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("api key %q: %w", id, err)
	}
	return k, nil
}

// APIKeys lists the keys of user userID, oldest first. An empty userID
// lists the keys of every user.
func (s *Store) APIKeys(ctx context.Context, userID string) ([]store.APIKey, error) {
	q := `SELECT ` + keyColumns + ` FROM api_keys`
	var args []any
	if userID != "" {
		q += ` WHERE user_id = $1`
		args = append(args, userID)
	}
	rows, err := s.b.Reader().Query(ctx, q+` ORDER BY created_at, id`, args...)
	list, err := scanAll(rows, err, s.scanKey)
	if err != nil {
		return nil, fmt.Errorf("list api keys of user %q: %w", userID, err)
	}
	return list, nil
}

// RotatedKey returns the key created by rotating key oldID with the
// rotation request id requestID.
func (s *Store) RotatedKey(ctx context.Context, oldID, requestID string) (store.APIKey, error) {
	if requestID == "" {
		return store.APIKey{}, fmt.Errorf("rotation of api key %q with an empty request id: %w",
			oldID, store.ErrNotFound)
	}
	row := s.b.Reader().QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys
		WHERE rotated_from = $1 AND rotation_request_id = $2`, oldID, requestID)
	k, err := s.scanKey(row)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("rotation %q of api key %q: %w", requestID, oldID, err)
	}
	return k, nil
}

// SetAPIKeyExpiry sets the expiry of key id to at. A zero at removes it.
func (s *Store) SetAPIKeyExpiry(ctx context.Context, id string, at time.Time) error {
	n, err := s.b.Writer().Exec(ctx, `UPDATE api_keys SET expires_at = $2 WHERE id = $1`,
		id, s.b.TimeArg(at))
	return checkWrite(n, err, s.b, "set expiry of api key %q", id)
}

// RevokeAPIKey sets the revocation time of key id to at, replacing an
// earlier one.
func (s *Store) RevokeAPIKey(ctx context.Context, id string, at time.Time) error {
	n, err := s.b.Writer().Exec(ctx, `UPDATE api_keys SET revoked_at = $2 WHERE id = $1`,
		id, s.b.TimeArg(at))
	return checkWrite(n, err, s.b, "revoke api key %q", id)
}

// APIKeysRevokedSince lists the keys revoked at or after t, or whose expiry
// is at or after t, ordered by id. A zero t lists every key that has a
// revocation time or an expiry.
func (s *Store) APIKeysRevokedSince(ctx context.Context, t time.Time) ([]store.APIKey, error) {
	if t.IsZero() {
		// The SQLite backend stores "not set" as 0, which must not match.
		t = time.UnixMilli(1)
	}
	rows, err := s.b.Reader().Query(ctx, `SELECT `+keyColumns+` FROM api_keys
		WHERE revoked_at >= $1 OR expires_at >= $1 ORDER BY id`, s.b.TimeArg(t))
	list, err := scanAll(rows, err, s.scanKey)
	if err != nil {
		return nil, fmt.Errorf("list api keys revoked since %s: %w", t.Format(time.RFC3339), err)
	}
	return list, nil
}

// TouchAPIKeys sets the last-used time of each key id in lastUsed, in one
// transaction. A time earlier than the stored one is ignored, and so is an
// id with no key.
func (s *Store) TouchAPIKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	if len(lastUsed) == 0 {
		return nil
	}
	err := s.b.InTx(ctx, func(q Querier) error {
		for id, at := range lastUsed {
			_, err := q.Exec(ctx, `UPDATE api_keys SET last_used_at = $2
				WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)`,
				id, s.b.TimeArg(at))
			if err != nil {
				return fmt.Errorf("key %q: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch api keys: %w", err)
	}
	return nil
}

func (s *Store) scanKey(row Row) (store.APIKey, error) {
	var k store.APIKey
	b := s.b
	err := row.Scan(&k.ID, &k.UserID, &k.KeyID, &k.Name, &k.Prefix, &k.SecretHash,
		b.TimeDest(&k.CreatedAt), b.TimeDest(&k.LastUsedAt), b.TimeDest(&k.ExpiresAt),
		b.TimeDest(&k.RevokedAt), &k.RotatedFrom, &k.RotationRequestID)
	return k, err
}
