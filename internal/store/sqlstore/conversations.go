package sqlstore

import (
	"context"
	"fmt"

	"github.com/grokproxy/grokproxy/internal/store"
)

const conversationColumns = `id, user_id, session_id, model, history_hash, upstream_id,
	last_response_id, created_at, updated_at`

// SaveConversation inserts c, or updates the stored conversation with the
// same ID, keeping its CreatedAt. An empty ID gets a
// new UUID, and CreatedAt (when zero) and UpdatedAt get the current time,
// all written back to c. A HistoryHash that another conversation of the
// same user holds returns an error wrapping store.ErrConflict.
func (s *Store) SaveConversation(ctx context.Context, c *store.Conversation) error {
	if c.ID == "" {
		c.ID = newID()
	}
	now := s.Now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	c.UpdatedAt = now
	b := s.b
	err := b.Writer().QueryRow(ctx, `INSERT INTO conversations (`+conversationColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id,
			session_id = excluded.session_id, model = excluded.model,
			history_hash = excluded.history_hash, upstream_id = excluded.upstream_id,
			last_response_id = excluded.last_response_id, updated_at = excluded.updated_at
		RETURNING created_at`,
		c.ID, c.UserID, c.SessionID, c.Model, c.HistoryHash, c.UpstreamID, c.LastResponseID,
		b.TimeArg(c.CreatedAt), b.TimeArg(c.UpdatedAt)).Scan(b.TimeDest(&c.CreatedAt))
	if err != nil {
		return fmt.Errorf("save conversation %q: %w", c.ID, b.MapError(err))
	}
	return nil
}

// ConversationByHash returns the conversation of user userID whose history
// hash is hash.
func (s *Store) ConversationByHash(ctx context.Context, userID, hash string) (store.Conversation, error) {
	var c store.Conversation
	b := s.b
	err := b.Reader().QueryRow(ctx, `SELECT `+conversationColumns+` FROM conversations
		WHERE user_id = $1 AND history_hash = $2`, userID, hash).Scan(
		&c.ID, &c.UserID, &c.SessionID, &c.Model, &c.HistoryHash, &c.UpstreamID,
		&c.LastResponseID, b.TimeDest(&c.CreatedAt), b.TimeDest(&c.UpdatedAt))
	if err != nil {
		return store.Conversation{}, fmt.Errorf("conversation of user %q by hash: %w", userID, err)
	}
	return c, nil
}
