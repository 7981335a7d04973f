package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/grokproxy/grokproxy/internal/store"
)

const userColumns = `id, name, role, active, rate_limit_per_minute, max_concurrent_per_key,
	models, expires_at, created_at, updated_at, metadata`

// CreateUser inserts u. An empty ID gets a new UUID, an empty Role RoleUser
// and a zero CreatedAt the current time, all written back to u. A
// duplicate ID returns an error wrapping store.ErrConflict.
func (s *Store) CreateUser(ctx context.Context, u *store.User) error {
	if u.ID == "" {
		u.ID = newID()
	}
	if u.Role == "" {
		u.Role = store.RoleUser
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = s.Now()
	}
	u.UpdatedAt = u.CreatedAt
	models, meta, err := encodeUser(u)
	if err != nil {
		return err
	}
	b := s.b
	_, err = b.Writer().Exec(ctx, `INSERT INTO users (`+userColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		u.ID, u.Name, u.Role, u.Active, nullInt(u.RateLimitPerMinute), u.MaxConcurrentPerKey,
		models, b.TimeArg(u.ExpiresAt), b.TimeArg(u.CreatedAt), b.TimeArg(u.UpdatedAt), meta)
	if err != nil {
		return fmt.Errorf("insert user %q: %w", u.ID, b.MapError(err))
	}
	return nil
}

// User returns the user with the given id.
func (s *Store) User(ctx context.Context, id string) (store.User, error) {
	row := s.b.Reader().QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id)
	u, err := s.scanUser(row)
	if err != nil {
		return store.User{}, fmt.Errorf("user %q: %w", id, err)
	}
	return u, nil
}

// Users lists every user, oldest first.
func (s *Store) Users(ctx context.Context) ([]store.User, error) {
	rows, err := s.b.Reader().Query(ctx, `SELECT `+userColumns+` FROM users
		ORDER BY created_at, id`)
	list, err := scanAll(rows, err, s.scanUser)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return list, nil
}

// UpdateUser overwrites every field of user u.ID except CreatedAt, and
// sets u.UpdatedAt to now.
func (s *Store) UpdateUser(ctx context.Context, u *store.User) error {
	models, meta, err := encodeUser(u)
	if err != nil {
		return err
	}
	updated := s.Now()
	b := s.b
	n, err := b.Writer().Exec(ctx, `UPDATE users SET name = $2, role = $3, active = $4,
		rate_limit_per_minute = $5, max_concurrent_per_key = $6, models = $7,
		expires_at = $8, updated_at = $9, metadata = $10
		WHERE id = $1`,
		u.ID, u.Name, u.Role, u.Active, nullInt(u.RateLimitPerMinute), u.MaxConcurrentPerKey,
		models, b.TimeArg(u.ExpiresAt), b.TimeArg(updated), meta)
	if err := checkWrite(n, err, b, "update user %q", u.ID); err != nil {
		return err
	}
	u.UpdatedAt = updated
	return nil
}

// DeleteUser deletes user id together with its API keys.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	n, err := s.b.Writer().Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
	return checkWrite(n, err, s.b, "delete user %q", id)
}

// CountAdmins returns the number of active users with RoleAdmin. It does
// not look at ExpiresAt.
func (s *Store) CountAdmins(ctx context.Context) (int, error) {
	var n int
	err := s.b.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM users
		WHERE role = $1 AND active = $2`, store.RoleAdmin, true).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count admins: %w", err)
	}
	return n, nil
}

func (s *Store) scanUser(row Row) (store.User, error) {
	var u store.User
	var rate sql.NullInt64
	var models, meta []byte
	b := s.b
	err := row.Scan(&u.ID, &u.Name, &u.Role, &u.Active, &rate, &u.MaxConcurrentPerKey,
		&models, b.TimeDest(&u.ExpiresAt), b.TimeDest(&u.CreatedAt), b.TimeDest(&u.UpdatedAt),
		&meta)
	if err != nil {
		return store.User{}, err
	}
	if rate.Valid {
		v := int(rate.Int64)
		u.RateLimitPerMinute = &v
	}
	if err := json.Unmarshal(models, &u.Models); err != nil {
		return store.User{}, fmt.Errorf("decode models of user %q: %w", u.ID, err)
	}
	if err := json.Unmarshal(meta, &u.Metadata); err != nil {
		return store.User{}, fmt.Errorf("decode metadata of user %q: %w", u.ID, err)
	}
	// Empty lists and maps come back nil, as a new User holds them.
	if len(u.Models) == 0 {
		u.Models = nil
	}
	if len(u.Metadata) == 0 {
		u.Metadata = nil
	}
	return u, nil
}

// encodeUser returns the JSON text of u.Models and u.Metadata. Nil and
// empty values are stored as "[]" and "{}".
func encodeUser(u *store.User) (models, meta string, err error) {
	m, err := json.Marshal(nonNil(u.Models))
	if err != nil {
		return "", "", fmt.Errorf("encode models of user %q: %w", u.ID, err)
	}
	md := u.Metadata
	if md == nil {
		md = map[string]string{}
	}
	d, err := json.Marshal(md)
	if err != nil {
		return "", "", fmt.Errorf("encode metadata of user %q: %w", u.ID, err)
	}
	return string(m), string(d), nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func nullInt(p *int) any {
	if p == nil {
		return nil
	}
	return int64(*p)
}
