package openai

import (
	"context"

	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/conversation"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Multi-turn chats on Grok web. The web app keeps a conversation upstream,
// while OpenAI clients resend the whole history each turn. When a request
// continues a history the gateway answered, the first attempt goes to the
// session that holds that conversation and sends only the new turn; any
// other attempt sends the whole history as a new conversation.

// followUp is the stored conversation a request may continue.
type followUp struct {
	prev    store.Conversation // the record to move on after the answer
	match   *conversation.Match
	pending bool // the follow-up has not been tried yet
}

// findConversation looks up the conversation that the request continues.
// A store failure is logged and the request goes on with its history.
func (h *Handler) findConversation(ctx context.Context, call *chatCall) {
	if h.Conversations == nil || !servedBy(call.model, store.ProviderGrok) {
		return
	}
	m, ok, err := h.Conversations.Lookup(ctx, principalID(ctx), call.model.ID, call.messages)
	if err != nil {
		call.logger().Warn("conversation lookup failed; sending the whole history", "error", err)
		return
	}
	if ok {
		call.follow = &followUp{prev: m.Conversation, match: &m, pending: true}
	}
}

// preferredSession returns the session that holds the conversation the
// request continues, or "" when there is none to try.
func (call *chatCall) preferredSession() string {
	if call.follow == nil || !call.follow.pending {
		return ""
	}
	return call.follow.match.Conversation.SessionID
}

// continueTurn turns ureq into a follow-up when the lease is the session
// that holds the conversation. It is tried once: when another session was
// leased, or on any later attempt, the whole history is sent.
func (call *chatCall) continueTurn(lease *pool.Lease, ureq *upstream.ChatRequest) {
	f := call.follow
	if f == nil || !f.pending {
		return
	}
	f.pending = false
	c := f.match.Conversation
	if lease.Provider != store.ProviderGrok || lease.SessionID != c.SessionID {
		call.logger().Debug("conversation owner not usable; sending the whole history", "session_id", c.SessionID)
		return
	}
	ureq.Messages = f.match.NewTurn
	ureq.ConversationID, ureq.ParentResponseID = c.UpstreamID, c.LastResponseID
}

// saveConversation records where a complete Grok web answer with the given
// text lives, so the client's next turn can continue it. The handler calls
// it before the client can see the end of the answer, so that a next turn
// sent at once finds the conversation.
func (h *Handler) saveConversation(ctx context.Context, call *chatCall, lease *pool.Lease, up *upstreamCall, text string) {
	if h.Conversations == nil || lease.Provider != store.ProviderGrok {
		return
	}
	var prev store.Conversation
	if call.follow != nil {
		prev = call.follow.prev
	}
	err := h.Conversations.Save(context.WithoutCancel(ctx), prev, principalID(ctx), call.model.ID, call.messages, conversation.Answer{
		SessionID:  lease.SessionID,
		UpstreamID: up.meta.ConversationID,
		ResponseID: up.meta.ResponseID,
		Text:       text,
	})
	if err != nil {
		call.logger().Warn("conversation not saved; the next turn sends the whole history", "error", err)
	}
}

// principalID is the user id conversations are kept under; empty (no
// conversation kept) when the request carries no principal.
func principalID(ctx context.Context) string {
	p, _ := auth.FromContext(ctx)
	return p.UserID
}
