package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrationLock is the pg_advisory_xact_lock key that serializes
// migrations of replicas starting together.
const migrationLock int64 = 0x67726f6b70726f78 // "grokprox"

// migrations are applied in order, and migration i has version i+1. Append
// new ones, and never edit one that has shipped.
var migrations = []string{
	// 1: initial schema.
	`CREATE TABLE sessions (
		id                   text PRIMARY KEY,
		provider             text NOT NULL,
		credential           bytea NOT NULL,
		credential_hash      text NOT NULL UNIQUE,
		proxy_url            bytea,
		label                text NOT NULL DEFAULT '',
		status               text NOT NULL,
		status_reason        text NOT NULL DEFAULT '',
		cooldown_until       timestamptz,
		weight               integer NOT NULL DEFAULT 0,
		max_concurrency      integer NOT NULL DEFAULT 0,
		created_at           timestamptz NOT NULL,
		updated_at           timestamptz NOT NULL,
		last_used_at         timestamptz,
		expires_at           timestamptz,
		last_health_check_at timestamptz,
		usage_count          bigint NOT NULL DEFAULT 0,
		success_count        bigint NOT NULL DEFAULT 0,
		failure_count        bigint NOT NULL DEFAULT 0,
		metadata             jsonb NOT NULL DEFAULT '{}'
	);
	CREATE INDEX sessions_status ON sessions (status, id);

	CREATE TABLE users (
		id                     text PRIMARY KEY,
		name                   text NOT NULL,
		role                   text NOT NULL,
		active                 boolean NOT NULL,
		rate_limit_per_minute  integer,
		max_concurrent_per_key integer NOT NULL DEFAULT 0,
		models                 jsonb NOT NULL DEFAULT '[]',
		expires_at             timestamptz,
		created_at             timestamptz NOT NULL,
		updated_at             timestamptz NOT NULL,
		metadata               jsonb NOT NULL DEFAULT '{}'
	);

	CREATE TABLE api_keys (
		id                  text PRIMARY KEY,
		user_id             text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		key_id              text NOT NULL UNIQUE,
		name                text NOT NULL DEFAULT '',
		prefix              text NOT NULL DEFAULT '',
		secret_hash         bytea NOT NULL,
		created_at          timestamptz NOT NULL,
		last_used_at        timestamptz,
		expires_at          timestamptz,
		revoked_at          timestamptz,
		rotated_from        text NOT NULL DEFAULT '',
		rotation_request_id text NOT NULL DEFAULT ''
	);
	CREATE INDEX api_keys_user ON api_keys (user_id);
	CREATE INDEX api_keys_revoked ON api_keys (revoked_at);
	CREATE INDEX api_keys_expires ON api_keys (expires_at);
	CREATE UNIQUE INDEX api_keys_rotation ON api_keys (rotated_from, rotation_request_id)
		WHERE rotation_request_id <> '';

	CREATE TABLE generations (
		id                text PRIMARY KEY,
		request_id        text NOT NULL DEFAULT '',
		user_id           text NOT NULL DEFAULT '',
		key_id            text NOT NULL DEFAULT '',
		session_id        text NOT NULL DEFAULT '',
		conversation_id   text NOT NULL DEFAULT '',
		provider          text NOT NULL DEFAULT '',
		model             text NOT NULL DEFAULT '',
		prompt            bytea NOT NULL,
		response          bytea NOT NULL,
		reasoning         bytea NOT NULL,
		finish_reason     text NOT NULL DEFAULT '',
		prompt_tokens     integer NOT NULL DEFAULT 0,
		completion_tokens integer NOT NULL DEFAULT 0,
		reasoning_tokens  integer NOT NULL DEFAULT 0,
		tokens_estimated  boolean NOT NULL DEFAULT false,
		status            integer NOT NULL DEFAULT 0,
		error_type        text NOT NULL DEFAULT '',
		attempts          jsonb NOT NULL DEFAULT '[]',
		latency_ms        bigint NOT NULL DEFAULT 0,
		first_token_ms    bigint NOT NULL DEFAULT 0,
		client_ip         text NOT NULL DEFAULT '',
		stream            boolean NOT NULL DEFAULT false,
		created_at        timestamptz NOT NULL,
		content_crypted   boolean NOT NULL DEFAULT false
	);
	CREATE INDEX generations_created ON generations (created_at);
	CREATE INDEX generations_user ON generations (user_id, created_at);

	CREATE TABLE conversations (
		id               text PRIMARY KEY,
		user_id          text NOT NULL,
		session_id       text NOT NULL,
		model            text NOT NULL DEFAULT '',
		history_hash     text NOT NULL,
		upstream_id      text NOT NULL DEFAULT '',
		last_response_id text NOT NULL DEFAULT '',
		created_at       timestamptz NOT NULL,
		updated_at       timestamptz NOT NULL,
		UNIQUE (user_id, history_hash)
	);
	CREATE INDEX conversations_session ON conversations (session_id);

	CREATE TABLE audit_events (
		seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		id         text NOT NULL UNIQUE,
		at         timestamptz NOT NULL,
		actor      text NOT NULL DEFAULT '',
		action     text NOT NULL,
		target     text NOT NULL DEFAULT '',
		client_ip  text NOT NULL DEFAULT '',
		request_id text NOT NULL DEFAULT '',
		details    jsonb NOT NULL DEFAULT '{}',
		prev_hash  text NOT NULL DEFAULT '',
		hash       text NOT NULL
	);
	CREATE INDEX audit_events_at ON audit_events (at);`,
}

// Migrate applies pending migrations in one transaction that holds an
// advisory lock, so replicas that start together apply each version once:
// the others wait for the lock, then find nothing pending.
func (s *Store) Migrate(ctx context.Context) error {
	var applied []int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`)
		if err != nil {
			return err
		}
		var current int
		err = tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).
			Scan(&current)
		if err != nil {
			return err
		}
		for i := current; i < len(migrations); i++ {
			version := i + 1
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("version %d: %w", version, err)
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version)
			if err != nil {
				return fmt.Errorf("record version %d: %w", version, err)
			}
			applied = append(applied, version)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate postgres: %w", err)
	}
	for _, v := range applied {
		s.log.Info("migration applied", "store", "postgres", "version", v)
	}
	return nil
}
