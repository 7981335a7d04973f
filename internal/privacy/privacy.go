// Package privacy serves data subject rights: export every record of a
// user as JSON, and erase them, from the store and from the audit queue
// and spool that have not reached the store yet. The admin API and the
// user's own /v1/me routes share it.
package privacy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// Store is the part of the store the service uses.
type Store interface {
	UserData(ctx context.Context, userID string) (store.UserData, error)
	APIKeys(ctx context.Context, userID string) ([]store.APIKey, error)
	EraseUserData(ctx context.Context, userID string) (store.Erasure, error)
	AppendAuditEvent(ctx context.Context, e *store.AuditEvent) error
}

// Queue holds audit records not yet in the store; audit.Writer is one.
type Queue interface {
	Erase(userID string) (int, error)
}

// Keys revokes keys, so that every replica stops accepting them.
type Keys interface {
	RevokeKey(ctx context.Context, id string) error
	ForgetUser(userID string)
}

// Upstream deletes a conversation that a session keeps on its upstream
// account.
type Upstream interface {
	DeleteConversation(ctx context.Context, sessionID, upstreamID string) error
}

// Service exports and erases a user's data. Set Store before use; the
// other fields may be nil.
type Service struct {
	Store Store
	Queue Queue
	Keys  Keys
	// Open returns a generation with its content decrypted; nil exports
	// the content as stored.
	Open func(g store.Generation) (store.Generation, error)
	// Upstream deletes the user's conversations on the upstream accounts;
	// nil leaves them there.
	Upstream Upstream
}

// Export is a user's data as the export routes return it. Key secrets and
// hashes are never part of it.
type Export struct {
	Object        string         `json:"object"` // "user_export"
	UserID        string         `json:"user_id"`
	ExportedAt    time.Time      `json:"exported_at"`
	User          *User          `json:"user"`
	APIKeys       []Key          `json:"api_keys"`
	Conversations []Conversation `json:"conversations"`
	Generations   []Generation   `json:"generations"`
}

// User is the profile part of an export.
type User struct {
	ID                 string            `json:"id"`
	Name               string            `json:"name"`
	Role               string            `json:"role"`
	Active             bool              `json:"active"`
	RateLimitPerMinute *int              `json:"rate_limit_per_minute"`
	Models             []string          `json:"models"`
	ExpiresAt          *time.Time        `json:"expires_at"`
	CreatedAt          time.Time         `json:"created_at"`
	UpdatedAt          time.Time         `json:"updated_at"`
	Metadata           map[string]string `json:"metadata"`
}

// Key is an API key without its secret or hash.
type Key struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// Conversation is a stored conversation link.
type Conversation struct {
	ID         string    `json:"id"`
	SessionID  string    `json:"session_id"`
	Model      string    `json:"model"`
	UpstreamID string    `json:"upstream_id"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Generation is one request's record.
type Generation struct {
	ID               string    `json:"id"`
	RequestID        string    `json:"request_id"`
	Model            string    `json:"model"`
	Prompt           string    `json:"prompt"`
	Response         string    `json:"response"`
	Reasoning        string    `json:"reasoning,omitempty"`
	FinishReason     string    `json:"finish_reason"`
	PromptTokens     int       `json:"prompt_tokens"`
	CompletionTokens int       `json:"completion_tokens"`
	Status           int       `json:"status"`
	ErrorType        string    `json:"error_type,omitempty"`
	Stream           bool      `json:"stream"`
	ClientIP         string    `json:"client_ip"`
	CreatedAt        time.Time `json:"created_at"`
	// ContentUnreadable is true when the content was encrypted with a key
	// the keyring no longer holds.
	ContentUnreadable bool `json:"content_unreadable,omitempty"`
}

// Export returns every record of userID. A user id with no records returns
// an export with empty lists and a nil User.
func (s *Service) Export(ctx context.Context, userID string) (Export, error) {
	d, err := s.Store.UserData(ctx, userID)
	if err != nil {
		return Export{}, fmt.Errorf("export user %q: %w", userID, err)
	}
	out := Export{Object: "user_export", UserID: userID, ExportedAt: time.Now().UTC(),
		APIKeys: []Key{}, Conversations: []Conversation{}, Generations: []Generation{}}
	if u := d.User; u != nil {
		out.User = &User{ID: u.ID, Name: u.Name, Role: u.Role, Active: u.Active,
			RateLimitPerMinute: u.RateLimitPerMinute, Models: u.Models, ExpiresAt: timeOrNil(u.ExpiresAt),
			CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, Metadata: u.Metadata}
	}
	for _, k := range d.Keys {
		out.APIKeys = append(out.APIKeys, Key{ID: k.ID, Name: k.Name, Prefix: k.Prefix,
			CreatedAt: k.CreatedAt, LastUsedAt: timeOrNil(k.LastUsedAt),
			ExpiresAt: timeOrNil(k.ExpiresAt), RevokedAt: timeOrNil(k.RevokedAt)})
	}
	for _, c := range d.Conversations {
		out.Conversations = append(out.Conversations, Conversation{ID: c.ID, SessionID: c.SessionID,
			Model: c.Model, UpstreamID: c.UpstreamID, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt})
	}
	for _, g := range d.Generations {
		out.Generations = append(out.Generations, s.exportGeneration(g))
	}
	return out, nil
}

func (s *Service) exportGeneration(g store.Generation) Generation {
	unreadable := false
	if g.ContentCrypted && s.Open != nil {
		opened, err := s.Open(g)
		if err == nil {
			g = opened
		} else {
			unreadable = true
		}
	}
	if g.ContentCrypted && (s.Open == nil || unreadable) {
		g.Prompt, g.Response, g.Reasoning = "", "", ""
		unreadable = true
	}
	return Generation{ID: g.ID, RequestID: g.RequestID, Model: g.Model, Prompt: g.Prompt,
		Response: g.Response, Reasoning: g.Reasoning, FinishReason: g.FinishReason,
		PromptTokens: g.PromptTokens, CompletionTokens: g.CompletionTokens, Status: g.Status,
		ErrorType: g.ErrorType, Stream: g.Stream, ClientIP: g.ClientIP, CreatedAt: g.CreatedAt,
		ContentUnreadable: unreadable}
}

// Erasure is the count of records an erasure removed.
type Erasure struct {
	Object string `json:"object"` // "user_erasure"
	UserID string `json:"user_id"`
	store.Erasure
	// Queued counts records removed from the audit queue and spool before
	// they reached the store.
	Queued int `json:"queued_records"`
	// UpstreamDeleted counts conversations deleted on upstream accounts,
	// and UpstreamFailed those whose deletion failed (the session was
	// gone, or upstream refused).
	UpstreamDeleted int `json:"upstream_conversations_deleted"`
	UpstreamFailed  int `json:"upstream_conversations_failed"`
}

// Actor is who asked for an erasure, for the audit trail.
type Actor struct {
	ID        string
	ClientIP  string
	RequestID string
}

// Erase revokes userID's keys, then deletes every record of userID: from
// the audit queue and spool, and from the store. It leaves a "user.erase"
// audit event naming the user and the counts, never the data. With
// Upstream set it first deletes the user's conversations on the upstream
// accounts (a soft delete on Grok web); a failed upstream deletion is
// counted, not fatal, so that the local erasure always happens.
func (s *Service) Erase(ctx context.Context, userID string, by Actor) (Erasure, error) {
	out := Erasure{Object: "user_erasure", UserID: userID}
	if s.Keys != nil {
		if err := s.revokeKeys(ctx, userID); err != nil {
			return out, err
		}
	}
	if s.Upstream != nil {
		data, err := s.Store.UserData(ctx, userID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return out, fmt.Errorf("erase user %q: %w", userID, err)
		}
		for _, c := range data.Conversations {
			if c.UpstreamID == "" {
				continue
			}
			if err := s.Upstream.DeleteConversation(ctx, c.SessionID, c.UpstreamID); err != nil {
				out.UpstreamFailed++
			} else {
				out.UpstreamDeleted++
			}
		}
	}
	// The queue goes first and last: a record flushed in between lands in
	// the store before the store erase, and one recorded after the store
	// erase is still queued for the second pass.
	var errs []error
	if s.Queue != nil {
		n, err := s.Queue.Erase(userID)
		out.Queued += n
		errs = append(errs, err)
	}
	e, err := s.Store.EraseUserData(ctx, userID)
	if err != nil {
		return out, err
	}
	out.Erasure = e
	if s.Queue != nil {
		n, err := s.Queue.Erase(userID)
		out.Queued += n
		errs = append(errs, err)
	}
	ev := &store.AuditEvent{Actor: by.ID, Action: "user.erase", Target: userID,
		ClientIP: by.ClientIP, RequestID: by.RequestID, Details: map[string]any{
			"user": e.User, "api_keys": e.Keys, "conversations": e.Conversations,
			"generations": e.Generations, "queued_records": out.Queued,
			"upstream_conversations_deleted": out.UpstreamDeleted,
			"upstream_conversations_failed":  out.UpstreamFailed,
		}}
	errs = append(errs, s.Store.AppendAuditEvent(ctx, ev))
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("erase user %q: %w", userID, err)
	}
	return out, nil
}

func (s *Service) revokeKeys(ctx context.Context, userID string) error {
	keys, err := s.Store.APIKeys(ctx, userID)
	if err != nil {
		return fmt.Errorf("erase user %q: %w", userID, err)
	}
	for _, k := range keys {
		if !k.RevokedAt.IsZero() {
			continue
		}
		if err := s.Keys.RevokeKey(ctx, k.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("erase user %q: revoke key %q: %w", userID, k.ID, err)
		}
	}
	s.Keys.ForgetUser(userID)
	return nil
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
