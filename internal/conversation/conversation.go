// Package conversation matches an OpenAI chat history to the upstream Grok
// web conversation the gateway started for it, so that a follow-up sends
// only the new turn instead of the whole history.
//
// A history is known by an HMAC, under a server key, of the user, the
// model and every message exactly as the client sent or received it,
// system prompt included. Only that hash and the upstream ids are stored:
// the store never learns the text, and a history of one user never
// matches a conversation of another, since the user id is part of the MAC.
package conversation

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// KeyPurpose is the label under which the server key is derived from the
// keyring (keyring.Derive). A new newest key changes the derived key, so
// conversations started before a key rotation are no longer continued:
// their next request is sent with its whole history instead.
const KeyPurpose = "conversation-history"

// Store is the part of the store that Tracker uses.
type Store interface {
	SaveConversation(ctx context.Context, c *store.Conversation) error
	ConversationByHash(ctx context.Context, userID, hash string) (store.Conversation, error)
}

// Tracker finds and records upstream conversations. It is safe for
// concurrent use.
type Tracker struct {
	st  Store
	key []byte
}

// New returns a tracker that keeps its records in st and hashes histories
// under key, which must be secret and the same on every replica.
func New(st Store, key []byte) *Tracker {
	return &Tracker{st: st, key: append([]byte(nil), key...)}
}

// Match is a stored conversation that a request continues.
type Match struct {
	Conversation store.Conversation
	// NewTurn is the part of the request the upstream has not seen: the
	// last user message.
	NewTurn []upstream.Message
}

// Hash returns the key of the history msgs of userID on model: the hex
// HMAC-SHA256 of each field, length-prefixed so that no two different
// histories encode alike.
func (t *Tracker) Hash(userID, model string, msgs []upstream.Message) string {
	m := hmac.New(sha256.New, t.key)
	writeField(m, "grokproxy conversation v1")
	writeField(m, userID)
	writeField(m, model)
	writeCount(m, len(msgs))
	for _, msg := range msgs {
		writeField(m, msg.Role)
		writeField(m, msg.Name)
		writeField(m, msg.ToolCallID)
		writeField(m, msg.Text)
		writeCount(m, len(msg.Images))
		for _, img := range msg.Images {
			writeField(m, img.MediaType)
			writeField(m, string(img.Data))
		}
	}
	return hex.EncodeToString(m.Sum(nil))
}

func writeField(h hash.Hash, s string) {
	writeCount(h, len(s))
	h.Write([]byte(s))
}

func writeCount(h hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}

// Lookup returns the conversation that msgs continues: the one whose
// stored history is msgs without its last message, when that message is
// a user turn and the one before it an assistant answer. ok is false when
// no conversation matches, and always for an empty userID, because
// conversations are never shared between callers.
func (t *Tracker) Lookup(ctx context.Context, userID, model string, msgs []upstream.Message) (m Match, ok bool, err error) {
	n := len(msgs)
	if userID == "" || n < 3 || msgs[n-1].Role != "user" || msgs[n-2].Role != "assistant" {
		return Match{}, false, nil
	}
	c, err := t.st.ConversationByHash(ctx, userID, t.Hash(userID, model, msgs[:n-1]))
	if errors.Is(err, store.ErrNotFound) {
		return Match{}, false, nil
	}
	if err != nil {
		return Match{}, false, fmt.Errorf("look up conversation: %w", err)
	}
	if c.UpstreamID == "" || c.LastResponseID == "" || c.SessionID == "" {
		return Match{}, false, nil
	}
	return Match{Conversation: c, NewTurn: msgs[n-1:]}, true, nil
}

// Answer is what the upstream did with a request: where the conversation
// lives and the answer text exactly as the client received it.
type Answer struct {
	SessionID  string
	UpstreamID string // upstream conversation id
	ResponseID string // upstream id of the answer, the parent of the next turn
	Text       string
}

// Save records that the history msgs followed by the answer lives in the
// upstream conversation of a. prev is the conversation the request
// continued, or zero for a new one. Its record moves on to the new
// history, so that each conversation keeps one row. Save does nothing for an empty
// userID, an answer without text or ids, or when another request of the
// same user saved the same history first.
func (t *Tracker) Save(ctx context.Context, prev store.Conversation, userID, model string, msgs []upstream.Message, a Answer) error {
	if userID == "" || a.Text == "" || a.SessionID == "" || a.UpstreamID == "" || a.ResponseID == "" {
		return nil
	}
	history := make([]upstream.Message, 0, len(msgs)+1)
	history = append(history, msgs...)
	history = append(history, upstream.Message{Role: "assistant", Text: a.Text})

	c := store.Conversation{
		UserID:         userID,
		SessionID:      a.SessionID,
		Model:          model,
		HistoryHash:    t.Hash(userID, model, history),
		UpstreamID:     a.UpstreamID,
		LastResponseID: a.ResponseID,
	}
	if prev.ID != "" && prev.UserID == userID {
		c.ID, c.CreatedAt = prev.ID, prev.CreatedAt
	}
	err := t.st.SaveConversation(ctx, &c)
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("save conversation: %w", err)
	}
	return nil
}
