package openai

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/catalog"
	"github.com/grokproxy/grokproxy/internal/conversation"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Pool is the part of the session pool the handlers use.
type Pool interface {
	Acquire(ctx context.Context, req pool.AcquireRequest) (*pool.Lease, error)
	Release(l *pool.Lease, res pool.Result)
	Usable(provider string) int
}

// Recorder takes the audit record of each admitted request.
type Recorder interface {
	// Admit returns an error when no more records can be accepted.
	Admit() error
	Record(g store.Generation)
}

// Handler serves the /v1 routes. Its fields are set once before use.
type Handler struct {
	Catalog     *catalog.Catalog
	Pool        Pool
	Clients     map[string]upstream.Client // by provider
	Audit       Recorder
	Metrics     *observe.Metrics
	Log         *slog.Logger
	MaxAttempts int    // upstream tries per request; 0 means 3
	Limits      Limits // message count and prompt size caps; zero fields take defaults
	Now         func() time.Time

	// Conversations continues Grok web conversations across turns; nil
	// sends every request's whole history as a new conversation.
	Conversations *conversation.Tracker
	// ImageURLs signs the image links of /v1/images/generations; nil
	// serves only response_format b64_json.
	ImageURLs *ImageURLs
}

// chatCall is the state of one chat completion request.
type chatCall struct {
	req      ChatRequest
	model    catalog.Model
	messages []upstream.Message
	rec      *store.Generation
	start    time.Time
	id       string // chatcmpl id shared by every chunk
	created  int64
	base     *slog.Logger // the handler's logger
	route    string       // route name on log lines
	log      *slog.Logger // base with the request's attributes, built by logger
	follow   *followUp    // the stored conversation this request continues; nil when none
	body     []byte       // the request body as received, for passthrough providers
}

// ServeChat handles POST /v1/chat/completions.
func (h *Handler) ServeChat(w http.ResponseWriter, r *http.Request) error {
	call := &chatCall{start: h.Now(), id: "chatcmpl-" + randomID()}
	call.created = call.start.Unix()
	call.rec = h.newRecord(r, call.start)
	call.base, call.route = h.Log, "chat_completions"
	if err := h.Audit.Admit(); err != nil {
		h.Metrics.RateLimited.WithLabelValues("audit_spool").Inc()
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: "audit_unavailable",
			Message: "The gateway cannot record requests right now; try again shortly.", RetryAfter: 5 * time.Second, Err: err}
	}
	err := h.chat(w, r, call)
	h.finishRecord(call, err)
	return err
}

// logger returns the request's logger and builds it on first use. Most
// requests log nothing of their own, and binding attributes costs an encoding.
func (c *chatCall) logger() *slog.Logger {
	if c.log == nil {
		args := []any{"request_id", c.rec.RequestID, "route", c.route}
		if c.model.ID != "" {
			args = append(args, "model", c.model.ID)
		}
		c.log = c.base.With(args...)
	}
	return c.log
}

func (h *Handler) newRecord(r *http.Request, start time.Time) *store.Generation {
	p, _ := auth.FromContext(r.Context())
	return &store.Generation{
		RequestID: observe.RequestID(r.Context()),
		UserID:    p.UserID,
		KeyID:     p.KeyID,
		ClientIP:  observe.ClientIP(r.Context()),
		CreatedAt: start,
		Status:    http.StatusOK,
	}
}

func (h *Handler) chat(w http.ResponseWriter, r *http.Request, call *chatCall) error {
	if err := call.decode(r); err != nil {
		return err
	}
	call.rec.Model, call.rec.Stream = call.req.Model, call.req.Stream
	if err := call.req.validate(h.Limits); err != nil {
		return err
	}
	model, err := h.resolveModel(r.Context(), call.req.Model)
	if err != nil {
		return err
	}
	call.model = model
	if call.messages, err = call.req.upstreamMessages(h.Limits); err != nil {
		return err
	}
	call.rec.Prompt = promptText(call.messages)
	if call.req.hasTools() && !servedBy(model, "xai") {
		return BadRequest("tools", "tools_unsupported",
			"Model %q is served by Grok web sessions, which have no tool calling; tools need a model served by the xai provider.", model.ID)
	}
	if call.req.hasTools() {
		// Only providers with native tool calling may serve the request.
		call.model = model.WithProviders(store.ProviderXAI)
	}
	h.findConversation(r.Context(), call)
	return h.attempt(w, r, call)
}

// resolveModel finds a chat model the caller may use.
func (h *Handler) resolveModel(ctx context.Context, id string) (catalog.Model, error) {
	model, ok := h.Catalog.Lookup(id)
	if !ok {
		return model, ModelNotFound(id)
	}
	if p, ok := auth.FromContext(ctx); ok && !allowed(p, model) {
		return model, ModelNotFound(id)
	}
	if model.Kind != catalog.KindChat {
		return model, BadRequest("model", "invalid_model",
			"Model %q generates images; call /v1/images/generations instead of chat completions.", id)
	}
	return model, nil
}

func allowed(p auth.Principal, m catalog.Model) bool {
	if len(p.Models) == 0 {
		return true
	}
	for _, id := range p.Models {
		if id == m.ID {
			return true
		}
	}
	return false
}

func servedBy(m catalog.Model, provider string) bool {
	for _, r := range m.Routes {
		if r.Provider == provider {
			return true
		}
	}
	return false
}

// attempt tries the request on up to MaxAttempts sessions. A failure before
// the first byte reaches the client moves on to another session; once the
// response has started, the stream is finished or cut where it is.
func (h *Handler) attempt(w http.ResponseWriter, r *http.Request, call *chatCall) error {
	ctx := r.Context()
	maxAttempts := h.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = 3
	}
	var tried []string
	var lastErr error
	for i := 0; i < maxAttempts; i++ {
		lease, route, err := h.acquire(ctx, call.model, tried, call.preferredSession())
		if err != nil {
			if lastErr == nil || i == 0 {
				lastErr = err
			}
			break
		}
		tried = append(tried, lease.SessionID)
		up, err := h.open(ctx, call, lease, route)
		if err == nil {
			return h.respond(w, r, call, lease, up)
		}
		lastErr = err
		if !upstream.OutcomeOf(err).Retryable() || ctx.Err() != nil {
			break
		}
		call.logger().Warn("retry on another session", "attempt", i+1, "session_id", lease.SessionID,
			"outcome", string(upstream.OutcomeOf(err)))
	}
	return clientError(lastErr)
}

// acquire leases a session from the first route of the model that has one,
// in the model's order of preference.
func (h *Handler) acquire(ctx context.Context, m catalog.Model, exclude []string, prefer string) (*pool.Lease, catalog.Route, error) {
	var firstErr error
	for _, route := range m.Routes {
		if h.Clients[route.Provider] == nil {
			continue
		}
		lease, err := h.Pool.Acquire(ctx, pool.AcquireRequest{Provider: route.Provider, Model: route.Upstream, Exclude: exclude, Prefer: prefer})
		if err == nil {
			return lease, route, nil
		}
		firstErr = preferError(firstErr, err)
	}
	if firstErr == nil {
		firstErr = &pool.NoSessionError{}
	}
	return nil, catalog.Route{}, firstErr
}

// preferError keeps the more useful of two acquire errors: a resting pool
// (the client may retry later) over an empty one.
func preferError(old, new error) error {
	if old == nil {
		return new
	}
	var ns *pool.NoSessionError
	if errors.As(new, &ns) && ns.Resting {
		var oldNS *pool.NoSessionError
		if !errors.As(old, &oldNS) || !oldNS.Resting || ns.RetryAfter < oldNS.RetryAfter {
			return new
		}
	}
	return old
}

// upstreamCall is an open upstream answer whose first events were read.
type upstreamCall struct {
	stream   upstream.Stream
	pending  []upstream.Event // read while peeking, not yet sent
	route    catalog.Route
	start    time.Time
	meta     upstream.Event
	provider string
}

// open starts the upstream call and reads until the first answer event, so
// that an early failure can still be retried elsewhere.
func (h *Handler) open(ctx context.Context, call *chatCall, lease *pool.Lease, route catalog.Route) (*upstreamCall, error) {
	began := h.Now()
	ureq := upstream.ChatRequest{Model: route.Upstream, Messages: call.messages, Stream: call.req.Stream, Body: call.body}
	call.continueTurn(lease, &ureq)
	stream, err := h.Clients[route.Provider].Chat(ctx, lease.Credential, ureq)
	if err == nil {
		up := &upstreamCall{stream: stream, route: route, start: began, provider: route.Provider}
		if err = up.peek(); err == nil {
			return up, nil
		}
		stream.Close()
	}
	h.release(call, lease, err, began)
	return nil, err
}

func (u *upstreamCall) peek() error {
	for {
		ev, err := u.stream.Next()
		if errors.Is(err, io.EOF) {
			return &upstream.Error{Outcome: upstream.OutcomeBrokenStream, Message: "upstream closed the stream before answering"}
		}
		if err != nil {
			return err
		}
		if ev.Kind == upstream.EventStart {
			u.meta = ev
			continue
		}
		u.pending = append(u.pending, ev)
		return nil
	}
}

// ready reports whether next can return without waiting for the upstream.
// Streams that cannot tell are never ready.
func (u *upstreamCall) ready() bool {
	if len(u.pending) > 0 {
		return true
	}
	rs, ok := u.stream.(upstream.ReadyStream)
	return ok && rs.Ready()
}

// next returns the next event, first those read while peeking.
func (u *upstreamCall) next() (upstream.Event, error) {
	if len(u.pending) > 0 {
		ev := u.pending[0]
		u.pending = u.pending[1:]
		return ev, nil
	}
	for {
		ev, err := u.stream.Next()
		if err != nil || ev.Kind != upstream.EventStart {
			return ev, err
		}
		u.meta = ev
	}
}

// release returns the lease with the outcome of err and records the attempt.
func (h *Handler) release(call *chatCall, lease *pool.Lease, err error, began time.Time) {
	latency := h.Now().Sub(began)
	h.Pool.Release(lease, pool.Result{Err: err, Latency: latency})
	outcome := upstream.OutcomeOf(err)
	h.Metrics.UpstreamOutcomes.WithLabelValues(lease.Provider, string(outcome)).Inc()
	a := store.Attempt{SessionID: lease.SessionID, Outcome: string(outcome), LatencyMS: latency.Milliseconds()}
	var ue *upstream.Error
	if errors.As(err, &ue) {
		a.Status = ue.Status
	}
	call.rec.Attempts = append(call.rec.Attempts, a)
	call.rec.SessionID, call.rec.Provider = lease.SessionID, lease.Provider
}

// clientError maps an acquire or upstream failure to what the client sees.
func clientError(err error) error {
	var ns *pool.NoSessionError
	var ue *upstream.Error
	switch {
	case errors.As(err, &ns) && ns.Resting:
		return &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: "sessions_resting",
			Message: "Every upstream session that serves this model is resting, because upstream rate-limited it or it reached " +
				"its own request rate (SESSION_RATE_LIMIT_PER_SECOND); retry after the time in Retry-After.",
			RetryAfter: max(ns.RetryAfter, time.Second), Err: err}
	case errors.As(err, &ns):
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: "no_session_available",
			Message: "No upstream session is available to serve this model.", Err: err}
	case errors.Is(err, pool.ErrCircuitOpen):
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: "upstream_circuit_open",
			Message: "The upstream provider is failing; requests are paused briefly.", RetryAfter: 10 * time.Second, Err: err}
	case errors.As(err, &ue):
		return upstreamClientError(ue)
	}
	return err
}

func upstreamClientError(ue *upstream.Error) *Error {
	switch ue.Outcome {
	case upstream.OutcomeRejectedRequest:
		msg := "The upstream rejected this request."
		if ue.Message != "" {
			msg = "The upstream rejected this request: " + ue.Message
		}
		return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Code: "upstream_rejected", Message: msg, Err: ue}
	case upstream.OutcomeRateLimited:
		return &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: "upstream_rate_limited",
			Message: "The upstream is rate limiting every session tried; retry later.", RetryAfter: max(ue.RetryAfter, time.Second), Err: ue}
	case upstream.OutcomeCanceled:
		return &Error{Status: 499, Type: TypeInvalidRequest, Code: "client_closed_request", Message: "The client closed the request.", Err: ue}
	case upstream.OutcomeUnavailable:
		if errors.Is(ue.Err, context.DeadlineExceeded) {
			return &Error{Status: http.StatusGatewayTimeout, Type: TypeServer, Code: "upstream_timeout", Message: "The upstream did not answer in time.", Err: ue}
		}
	}
	return &Error{Status: http.StatusBadGateway, Type: TypeUpstream, Code: "upstream_" + string(ue.Outcome),
		Message: fmt.Sprintf("The upstream failed (%s) on every session tried.", strings.ReplaceAll(string(ue.Outcome), "_", " ")), Err: ue}
}
