// Package upstream defines how the gateway talks to a provider: a Client
// turns a chat request into a stream of typed events, and every failure is
// an *Error carrying one Outcome from a closed set.
package upstream

import (
	"context"
	"encoding/json"
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
)

// Credential is what a client needs to call upstream on behalf of one
// session.
type Credential struct {
	SessionID string
	// Secret is the cookie text for grok ("sso=…" or a Cookie header) and
	// the API key for xai.
	Secret secret.Value
	// ProxyURL is the outbound proxy for this session; empty means the
	// default egress.
	ProxyURL secret.Value
	// AccountID is the upstream user id, when a probe has learned it.
	AccountID string
}

// Message is one turn of the conversation, reduced to what upstreams accept.
type Message struct {
	Role   string // system, user, assistant or tool
	Text   string
	Images []Image
	// Name and ToolCallID are kept for tool results.
	Name       string
	ToolCallID string
}

// Image is an inline image attachment.
type Image struct {
	MediaType string // e.g. "image/png"
	Data      []byte
}

// ChatRequest is a chat call as a client sends it upstream.
type ChatRequest struct {
	// Model is the upstream model or mode id, already resolved from the
	// public model id.
	Model    string
	Messages []Message

	// ConversationID and ParentResponseID continue an upstream
	// conversation; both empty starts a new one.
	ConversationID   string
	ParentResponseID string

	// Body is the client's OpenAI request body with the model replaced;
	// passthrough providers forward it as is.
	Body json.RawMessage
	// Stream reports whether the client asked for a stream.
	Stream bool
}

// EventKind tells which fields of an Event are set.
type EventKind uint8

const (
	// EventStart carries upstream ids: ConversationID, ResponseID and
	// ParentResponseID (the user turn the answer replies to).
	EventStart EventKind = iota + 1
	// EventText carries answer text in Text.
	EventText
	// EventReasoning carries reasoning text in Text.
	EventReasoning
	// EventImage carries a generated image reference in Image.
	EventImage
	// EventToolCall carries one tool-call delta in ToolCall.
	EventToolCall
	// EventDone ends the answer: FinishReason, Usage when upstream reports
	// it, and the final ResponseID.
	EventDone
)

// Event is one step of an upstream answer.
type Event struct {
	Kind EventKind
	Text string

	ConversationID   string
	ResponseID       string
	ParentResponseID string
	Model            string // upstream model that answered, when reported

	Image    *ImageRef
	ToolCall *ToolCallDelta

	FinishReason string // "stop", "length", "tool_calls" or "content_filter"
	Usage        *Usage // nil when upstream does not report usage
}

// ImageRef is a generated image: a URL on the upstream's asset host, or
// the bytes themselves.
type ImageRef struct {
	URL       string
	Data      []byte
	MediaType string
}

// ToolCallDelta is a streamed piece of one tool call, as in OpenAI chunks.
type ToolCallDelta struct {
	Index     int
	ID        string
	Type      string
	Name      string
	Arguments string
}

// Usage is the token accounting that upstream reports.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	ReasoningTokens  int
	TotalTokens      int
}

// Stream is an upstream answer in progress. Next returns the next event,
// io.EOF after the last one, or an *Error. Close releases the connection
// and may be called at any time, from one goroutine at a time with Next.
type Stream interface {
	Next() (Event, error)
	Close() error
}

// ReadyStream is a Stream that can tell whether its next event has already
// arrived. A caller that writes events to a client may then leave the
// client's buffer unflushed until the stream would wait for the network.
type ReadyStream interface {
	Stream
	// Ready reports whether Next can return without reading from the
	// network.
	Ready() bool
}

// Probe is what a health check learned about a session without spending
// chat quota.
type Probe struct {
	AccountID string
	Tier      string
	// Quota is keyed by upstream model or mode id.
	Quota map[string]ProbeQuota
}

// ProbeQuota is the remaining allowance of one upstream model.
type ProbeQuota struct {
	Remaining int
	Total     int
	Window    time.Duration
}

// Client calls one provider. Implementations are safe for concurrent use.
type Client interface {
	// Chat starts a chat. An error before the answer starts is an *Error.
	Chat(ctx context.Context, c Credential, req ChatRequest) (Stream, error)
	// Probe checks the login and refreshes quota without spending chat
	// quota. A dead login returns an *Error with OutcomeUnauthorized.
	Probe(ctx context.Context, c Credential) (Probe, error)
}
