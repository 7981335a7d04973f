package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/grokproxy/grokproxy/internal/store/sqlstore"
)

// migrations are applied in order, and migration i has version i+1. Append
// new ones, and never edit one that has shipped.
var migrations = []string{
	// 1: initial schema.
	`CREATE TABLE sessions (
		id                   TEXT PRIMARY KEY,
		provider             TEXT NOT NULL,
		credential           BLOB NOT NULL,
		credential_hash      TEXT NOT NULL UNIQUE,
		proxy_url            BLOB,
		label                TEXT NOT NULL DEFAULT '',
		status               TEXT NOT NULL,
		status_reason        TEXT NOT NULL DEFAULT '',
		cooldown_until       INTEGER NOT NULL DEFAULT 0,
		weight               INTEGER NOT NULL DEFAULT 0,
		max_concurrency      INTEGER NOT NULL DEFAULT 0,
		created_at           INTEGER NOT NULL,
		updated_at           INTEGER NOT NULL,
		last_used_at         INTEGER NOT NULL DEFAULT 0,
		expires_at           INTEGER NOT NULL DEFAULT 0,
		last_health_check_at INTEGER NOT NULL DEFAULT 0,
		usage_count          INTEGER NOT NULL DEFAULT 0,
		success_count        INTEGER NOT NULL DEFAULT 0,
		failure_count        INTEGER NOT NULL DEFAULT 0,
		metadata             TEXT NOT NULL DEFAULT '{}'
	) STRICT;
	CREATE INDEX sessions_status ON sessions (status, id);

	CREATE TABLE users (
		id                     TEXT PRIMARY KEY,
		name                   TEXT NOT NULL,
		role                   TEXT NOT NULL,
		active                 INTEGER NOT NULL,
		rate_limit_per_minute  INTEGER,
		max_concurrent_per_key INTEGER NOT NULL DEFAULT 0,
		models                 TEXT NOT NULL DEFAULT '[]',
		expires_at             INTEGER NOT NULL DEFAULT 0,
		created_at             INTEGER NOT NULL,
		updated_at             INTEGER NOT NULL,
		metadata               TEXT NOT NULL DEFAULT '{}'
	) STRICT;

	CREATE TABLE api_keys (
		id                  TEXT PRIMARY KEY,
		user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		key_id              TEXT NOT NULL UNIQUE,
		name                TEXT NOT NULL DEFAULT '',
		prefix              TEXT NOT NULL DEFAULT '',
		secret_hash         BLOB NOT NULL,
		created_at          INTEGER NOT NULL,
		last_used_at        INTEGER NOT NULL DEFAULT 0,
		expires_at          INTEGER NOT NULL DEFAULT 0,
		revoked_at          INTEGER NOT NULL DEFAULT 0,
		rotated_from        TEXT NOT NULL DEFAULT '',
		rotation_request_id TEXT NOT NULL DEFAULT ''
	) STRICT;
	CREATE INDEX api_keys_user ON api_keys (user_id);
	CREATE INDEX api_keys_revoked ON api_keys (revoked_at);
	CREATE INDEX api_keys_expires ON api_keys (expires_at);
	CREATE UNIQUE INDEX api_keys_rotation ON api_keys (rotated_from, rotation_request_id)
		WHERE rotation_request_id <> '';

	CREATE TABLE generations (
		id                TEXT PRIMARY KEY,
		request_id        TEXT NOT NULL DEFAULT '',
		user_id           TEXT NOT NULL DEFAULT '',
		key_id            TEXT NOT NULL DEFAULT '',
		session_id        TEXT NOT NULL DEFAULT '',
		conversation_id   TEXT NOT NULL DEFAULT '',
		provider          TEXT NOT NULL DEFAULT '',
		model             TEXT NOT NULL DEFAULT '',
		prompt            BLOB NOT NULL,
		response          BLOB NOT NULL,
		reasoning         BLOB NOT NULL,
		finish_reason     TEXT NOT NULL DEFAULT '',
		prompt_tokens     INTEGER NOT NULL DEFAULT 0,
		completion_tokens INTEGER NOT NULL DEFAULT 0,
		reasoning_tokens  INTEGER NOT NULL DEFAULT 0,
		tokens_estimated  INTEGER NOT NULL DEFAULT 0,
		status            INTEGER NOT NULL DEFAULT 0,
		error_type        TEXT NOT NULL DEFAULT '',
		attempts          TEXT NOT NULL DEFAULT '[]',
		latency_ms        INTEGER NOT NULL DEFAULT 0,
		first_token_ms    INTEGER NOT NULL DEFAULT 0,
		client_ip         TEXT NOT NULL DEFAULT '',
		stream            INTEGER NOT NULL DEFAULT 0,
		created_at        INTEGER NOT NULL,
		content_crypted   INTEGER NOT NULL DEFAULT 0
	) STRICT;
	CREATE INDEX generations_created ON generations (created_at);
	CREATE INDEX generations_user ON generations (user_id, created_at);

	CREATE TABLE conversations (
		id               TEXT PRIMARY KEY,
		user_id          TEXT NOT NULL,
		session_id       TEXT NOT NULL,
		model            TEXT NOT NULL DEFAULT '',
		history_hash     TEXT NOT NULL,
		upstream_id      TEXT NOT NULL DEFAULT '',
		last_response_id TEXT NOT NULL DEFAULT '',
		created_at       INTEGER NOT NULL,
		updated_at       INTEGER NOT NULL,
		UNIQUE (user_id, history_hash)
	) STRICT;
	CREATE INDEX conversations_session ON conversations (session_id);

	CREATE TABLE audit_events (
		seq        INTEGER PRIMARY KEY AUTOINCREMENT,
		id         TEXT NOT NULL UNIQUE,
		at         INTEGER NOT NULL,
		actor      TEXT NOT NULL DEFAULT '',
		action     TEXT NOT NULL,
		target     TEXT NOT NULL DEFAULT '',
		client_ip  TEXT NOT NULL DEFAULT '',
		request_id TEXT NOT NULL DEFAULT '',
		details    TEXT NOT NULL DEFAULT '{}',
		prev_hash  TEXT NOT NULL DEFAULT '',
		hash       TEXT NOT NULL
	) STRICT;
	CREATE INDEX audit_events_at ON audit_events (at);`,
}

// Migrate applies pending migrations, each in its own transaction. The
// writer's transactions take SQLite's write lock when they begin, so a
// second process that migrates at the same time waits, then finds the
// versions already applied.
func (s *Store) Migrate(ctx context.Context) error {
	for i, m := range migrations {
		version := i + 1
		applied, err := s.applyMigration(ctx, version, m)
		if err != nil {
			return fmt.Errorf("migrate sqlite %q to version %d: %w", s.path, version, err)
		}
		if applied {
			s.log.Info("migration applied", "store", "sqlite", "version", version)
		}
	}
	return nil
}

func (s *Store) applyMigration(ctx context.Context, version int, ddl string) (bool, error) {
	applied := false
	err := inTx(ctx, s.write, func(q sqlstore.Querier) error {
		_, err := q.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at INTEGER NOT NULL
		) STRICT`)
		if err != nil {
			return err
		}
		var n int
		err = q.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`,
			version).Scan(&n)
		if err != nil || n > 0 {
			return err
		}
		if _, err := q.Exec(ctx, ddl); err != nil {
			return err
		}
		_, err = q.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at)
			VALUES ($1, $2)`, version, time.Now().UnixMilli())
		applied = err == nil
		return err
	})
	return applied, err
}
