package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// DeleteGenerationsBefore deletes up to limit of the oldest generations
// created before t, in one short statement, and returns how many it
// deleted. A limit of 0 or less means 1000.
func (s *Store) DeleteGenerationsBefore(ctx context.Context, t time.Time, limit int) (int64, error) {
	if limit <= 0 {
		limit = 1000
	}
	n, err := s.b.Writer().Exec(ctx, `DELETE FROM generations WHERE id IN (
		SELECT id FROM generations WHERE created_at < $1 ORDER BY created_at LIMIT $2)`,
		s.b.TimeArg(Truncate(t)), limit)
	if err != nil {
		return 0, fmt.Errorf("delete generations before %s: %w", t.Format(time.RFC3339), err)
	}
	return n, nil
}

// DeleteDeadSessionsBefore deletes up to limit expired or revoked sessions
// whose row was last updated before t, with the conversations they hold,
// and returns their ids. A limit of 0 or less means 1000.
//
// NOTE: the age counts from updated_at. The pool saves no state for a
// session out of rotation, so updated_at is the time it died.
func (s *Store) DeleteDeadSessionsBefore(ctx context.Context, t time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 1000
	}
	var ids []string
	err := s.b.InTx(ctx, func(q Querier) error {
		rows, err := q.Query(ctx, `SELECT id FROM sessions WHERE status IN ($1, $2)
			AND updated_at < $3 ORDER BY updated_at LIMIT $4`,
			store.StatusExpired, store.StatusRevoked, s.b.TimeArg(Truncate(t)), limit)
		ids, err = scanAll(rows, err, func(r Row) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		in, args := inList(ids, 0)
		if _, err := q.Exec(ctx, `DELETE FROM conversations WHERE session_id IN (`+in+`)`, args...); err != nil {
			return err
		}
		_, err = q.Exec(ctx, `DELETE FROM sessions WHERE id IN (`+in+`)`, args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete dead sessions before %s: %w", t.Format(time.RFC3339), err)
	}
	return ids, nil
}

// inList returns "$n+1, $n+2, …" for ids and the matching arguments.
func inList(ids []string, n int) (string, []any) {
	marks := make([]string, len(ids))
	args := make([]any, len(ids))
	for i, id := range ids {
		marks[i] = "$" + strconv.Itoa(n+i+1)
		args[i] = id
	}
	return strings.Join(marks, ", "), args
}

// UserData returns every record the store holds about userID, generations
// newest first. A user id without a user row, such as a static key's,
// returns its other records with User nil.
func (s *Store) UserData(ctx context.Context, userID string) (store.UserData, error) {
	var d store.UserData
	u, err := s.User(ctx, userID)
	switch {
	case err == nil:
		d.User = &u
	case !isNotFound(err):
		return d, err
	}
	if d.Keys, err = s.APIKeys(ctx, userID); err != nil {
		return d, err
	}
	b := s.b
	rows, err := b.Reader().Query(ctx, `SELECT `+conversationColumns+` FROM conversations
		WHERE user_id = $1 ORDER BY created_at, id`, userID)
	d.Conversations, err = scanAll(rows, err, func(r Row) (store.Conversation, error) {
		var c store.Conversation
		err := r.Scan(&c.ID, &c.UserID, &c.SessionID, &c.Model, &c.HistoryHash, &c.UpstreamID,
			&c.LastResponseID, b.TimeDest(&c.CreatedAt), b.TimeDest(&c.UpdatedAt))
		return c, err
	})
	if err != nil {
		return d, fmt.Errorf("conversations of user %q: %w", userID, err)
	}
	rows, err = b.Reader().Query(ctx, `SELECT `+strings.Join(generationColumns, ", ")+`
		FROM generations WHERE user_id = $1 ORDER BY created_at DESC, id DESC`, userID)
	d.Generations, err = scanAll(rows, err, s.scanGeneration)
	if err != nil {
		return d, fmt.Errorf("generations of user %q: %w", userID, err)
	}
	return d, nil
}

// EraseUserData deletes the generations, conversations, API keys and user
// row of userID in one transaction and counts what it deleted.
func (s *Store) EraseUserData(ctx context.Context, userID string) (store.Erasure, error) {
	var e store.Erasure
	err := s.b.InTx(ctx, func(q Querier) error {
		var err error
		if e.Generations, err = q.Exec(ctx, `DELETE FROM generations WHERE user_id = $1`, userID); err != nil {
			return err
		}
		if e.Conversations, err = q.Exec(ctx, `DELETE FROM conversations WHERE user_id = $1`, userID); err != nil {
			return err
		}
		if e.Keys, err = q.Exec(ctx, `DELETE FROM api_keys WHERE user_id = $1`, userID); err != nil {
			return err
		}
		n, err := q.Exec(ctx, `DELETE FROM users WHERE id = $1`, userID)
		e.User = n > 0
		return err
	})
	if err != nil {
		return store.Erasure{}, fmt.Errorf("erase data of user %q: %w", userID, err)
	}
	return e, nil
}
