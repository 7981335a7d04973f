package openai

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/tokenizer"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// answer accumulates what was sent to the client, for the response body,
// usage and the audit record.
type answer struct {
	text      strings.Builder
	reasoning strings.Builder
	tools     []toolCall
	finish    string
	usage     *upstream.Usage
	firstAt   time.Time
}

// decode reads the request body into call.req and keeps the raw bytes,
// which passthrough providers forward with only the model changed.
func (call *chatCall) decode(r *http.Request) error {
	var raw bytes.Buffer
	r.Body = readCloser{Reader: io.TeeReader(r.Body, &raw), Closer: r.Body}
	err := decodeJSON(r, &call.req)
	call.body = raw.Bytes()
	return err
}

type readCloser struct {
	io.Reader
	io.Closer
}

// respond sends the upstream answer to the client, as a stream or as one
// JSON body, and releases the lease with the final outcome.
func (h *Handler) respond(w http.ResponseWriter, r *http.Request, call *chatCall, lease *pool.Lease, up *upstreamCall) error {
	defer up.stream.Close()
	var ans answer
	var err error
	save := func() { h.saveConversation(r.Context(), call, lease, up, ans.text.String()) }
	if call.req.Stream {
		err = h.stream(w, r, call, up, &ans, save)
	} else {
		err = collect(up, &ans, h.Now)
		if err == nil {
			save()
		}
	}
	h.release(call, lease, err, up.start)
	h.fillRecord(call, &ans, up)
	if err != nil {
		if call.req.Stream {
			// The status line is out; the error was sent as an event.
			call.rec.Status = statusOf(clientError(err))
			call.rec.ErrorType = string(upstream.OutcomeOf(err))
			return nil
		}
		return clientError(err)
	}
	if !call.req.Stream {
		writeJSON(w, http.StatusOK, h.completion(call, &ans))
	}
	h.Metrics.GenerationLatency.WithLabelValues(call.model.ID, up.provider).Observe(h.Now().Sub(call.start).Seconds())
	return nil
}

func statusOf(err error) int { return AsError(err).Status }

// collect reads the whole answer for a non-streamed response.
func collect(up *upstreamCall, ans *answer, now func() time.Time) error {
	for {
		ev, err := up.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if ans.firstAt.IsZero() && (ev.Kind == upstream.EventText || ev.Kind == upstream.EventReasoning) {
			ans.firstAt = now()
		}
		if ans.add(ev) {
			return nil
		}
	}
}

// add folds one event into the answer and reports whether it was the last.
func (a *answer) add(ev upstream.Event) bool {
	switch ev.Kind {
	case upstream.EventText:
		a.text.WriteString(ev.Text)
	case upstream.EventReasoning:
		a.reasoning.WriteString(ev.Text)
	case upstream.EventToolCall:
		a.addToolCall(ev.ToolCall)
	case upstream.EventImage:
		if ev.Image != nil && ev.Image.URL != "" {
			a.text.WriteString("\n![image](" + ev.Image.URL + ")\n")
		}
	case upstream.EventDone:
		a.finish, a.usage = ev.FinishReason, ev.Usage
		return true
	}
	return false
}

func (a *answer) addToolCall(d *upstream.ToolCallDelta) {
	if d == nil {
		return
	}
	for len(a.tools) <= d.Index {
		idx := len(a.tools)
		a.tools = append(a.tools, toolCall{Index: &idx, Type: "function"})
	}
	tc := &a.tools[d.Index]
	if d.ID != "" {
		tc.ID = d.ID
	}
	if d.Name != "" {
		tc.Function.Name = d.Name
	}
	tc.Function.Arguments += d.Arguments
}

// stream relays the answer as server-sent events. It returns the upstream
// or write error that ended it early, or nil after [DONE].
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, call *chatCall, up *upstreamCall, ans *answer, beforeDone func()) error {
	sse := newSSEWriter(w)
	sse.start()
	empty := ""
	first := call.chunk(delta{Role: "assistant", Content: &empty}, nil)
	if err := sse.event(first); err != nil {
		return canceled(err)
	}
	for {
		// Flush before waiting for the upstream, not after every event.
		if sse.unflushed && !up.ready() {
			if err := sse.flush(); err != nil {
				return canceled(err)
			}
		}
		ev, err := up.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			h.streamError(sse, call, err)
			return err
		}
		if ans.firstAt.IsZero() && (ev.Kind == upstream.EventText || ev.Kind == upstream.EventReasoning) {
			ans.firstAt = h.Now()
			h.Metrics.TimeToFirstToken.WithLabelValues(call.model.ID, up.provider).Observe(ans.firstAt.Sub(call.start).Seconds())
		}
		last := ans.add(ev)
		if d, ok := eventDelta(ev); ok {
			if err := sse.write(call.chunk(d, nil)); err != nil {
				return canceled(err)
			}
		}
		if last {
			break
		}
	}
	return h.finishStream(sse, call, ans, beforeDone)
}

// finishStream writes the closing chunks, runs beforeDone, and writes
// [DONE], which flushes them all.
func (h *Handler) finishStream(sse *sseWriter, call *chatCall, ans *answer, beforeDone func()) error {
	finish := finishReason(ans)
	if err := sse.write(call.chunk(delta{}, &finish)); err != nil {
		return canceled(err)
	}
	if call.req.StreamOptions != nil && call.req.StreamOptions.IncludeUsage {
		c := call.chunk(delta{}, nil)
		c.Choices = []chunkChoice{}
		c.Usage = usageOf(call, ans)
		if err := sse.write(c); err != nil {
			return canceled(err)
		}
	}
	beforeDone()
	if err := sse.done(); err != nil {
		return canceled(err)
	}
	return nil
}

// streamError ends a started stream with an OpenAI error event and no
// [DONE], so clients see the answer is incomplete.
func (h *Handler) streamError(sse *sseWriter, call *chatCall, err error) {
	if upstream.OutcomeOf(err) == upstream.OutcomeCanceled {
		return
	}
	e := &Error{Status: http.StatusBadGateway, Type: TypeUpstream, Code: "upstream_stream_broken",
		Message: "The upstream stream failed after the answer had started; the answer is incomplete."}
	sse.data(e.Body(call.rec.RequestID))
	call.logger().Warn("stream cut after first byte", "outcome", string(upstream.OutcomeOf(err)), "error", err)
}

// canceled marks a failed write to the client: the client went away.
func canceled(err error) error {
	return &upstream.Error{Outcome: upstream.OutcomeCanceled, Message: "client went away", Err: err}
}

func eventDelta(ev upstream.Event) (delta, bool) {
	switch ev.Kind {
	case upstream.EventText:
		text := ev.Text
		return delta{Content: &text}, text != ""
	case upstream.EventReasoning:
		return delta{ReasoningContent: ev.Text}, ev.Text != ""
	case upstream.EventImage:
		if ev.Image == nil || ev.Image.URL == "" {
			return delta{}, false
		}
		text := "\n![image](" + ev.Image.URL + ")\n"
		return delta{Content: &text}, true
	case upstream.EventToolCall:
		d := ev.ToolCall
		if d == nil {
			return delta{}, false
		}
		idx := d.Index
		return delta{ToolCalls: []toolCall{{Index: &idx, ID: d.ID, Type: d.Type,
			Function: toolFunction{Name: d.Name, Arguments: d.Arguments}}}}, true
	}
	return delta{}, false
}

func (call *chatCall) chunk(d delta, finish *string) *chunk {
	return &chunk{
		ID: call.id, Object: "chat.completion.chunk", Created: call.created, Model: call.req.Model,
		Choices: []chunkChoice{{Index: 0, Delta: d, FinishReason: finish}},
	}
}

func finishReason(ans *answer) string {
	switch {
	case ans.finish != "":
		return ans.finish
	case len(ans.tools) > 0:
		return "tool_calls"
	}
	return "stop"
}

func (h *Handler) completion(call *chatCall, ans *answer) *completion {
	// One allocation for the object and everything it points to.
	b := &struct {
		completion
		choice [1]completionChoice
		usage  usage
		detail completionTokDetail
		text   string
	}{}
	b.text = ans.text.String()
	msg := responseMessage{Role: "assistant", Content: &b.text, ReasoningContent: ans.reasoning.String(), ToolCalls: wholeToolCalls(ans.tools)}
	if len(ans.tools) > 0 && b.text == "" {
		msg.Content = nil
	}
	b.choice[0] = completionChoice{Index: 0, Message: msg, FinishReason: finishReason(ans)}
	b.usage = usageFrom(call.tokenUsage(ans), &b.detail)
	b.completion = completion{
		ID: call.id, Object: "chat.completion", Created: call.created, Model: call.req.Model,
		Choices: b.choice[:], Usage: &b.usage,
	}
	return &b.completion
}

// wholeToolCalls returns the accumulated tool calls as a message carries
// them: without the index that only stream deltas have.
func wholeToolCalls(calls []toolCall) []toolCall {
	out := make([]toolCall, 0, len(calls))
	for _, tc := range calls {
		tc.Index = nil
		out = append(out, tc)
	}
	return out
}

// usageOf returns upstream usage when reported, otherwise an estimate.
func usageOf(call *chatCall, ans *answer) *usage {
	u := usageFrom(call.tokenUsage(ans), new(completionTokDetail))
	return &u
}

// usageFrom returns the usage object of u, whose details it stores in
// detail.
func usageFrom(u upstream.Usage, detail *completionTokDetail) usage {
	*detail = completionTokDetail{ReasoningTokens: u.ReasoningTokens}
	return usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens,
		CompletionTokensDetails: detail}
}

func (call *chatCall) tokenUsage(ans *answer) upstream.Usage {
	if ans.usage != nil {
		return *ans.usage
	}
	u := upstream.Usage{
		PromptTokens:    estimateTokens(call.rec.Prompt),
		ReasoningTokens: estimateTokens(ans.reasoning.String()),
	}
	u.CompletionTokens = estimateTokens(ans.text.String()) + u.ReasoningTokens
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// estimateTokens counts tokens with the o200k_base encoding for upstreams
// that report none; records built from it are marked TokensEstimated.
func estimateTokens(s string) int { return tokenizer.Count(s) }

func (h *Handler) fillRecord(call *chatCall, ans *answer, up *upstreamCall) {
	rec := call.rec
	rec.Response = ans.text.String()
	rec.Reasoning = ans.reasoning.String()
	rec.FinishReason = finishReason(ans)
	u := call.tokenUsage(ans)
	rec.PromptTokens, rec.CompletionTokens, rec.ReasoningTokens = u.PromptTokens, u.CompletionTokens, u.ReasoningTokens
	rec.TokensEstimated = ans.usage == nil
	rec.ConversationID = up.meta.ConversationID
	if !ans.firstAt.IsZero() {
		rec.FirstTokenMS = max(ans.firstAt.Sub(call.start).Milliseconds(), 1)
	}
}

// finishRecord completes the audit record with the final status and hands
// it to the recorder: exactly one record per admitted request.
func (h *Handler) finishRecord(call *chatCall, err error) {
	rec := call.rec
	if err != nil {
		e := AsError(err)
		rec.Status, rec.ErrorType = e.Status, e.Type
		if e.Code != "" {
			rec.ErrorType = e.Code
		}
	}
	rec.LatencyMS = h.Now().Sub(call.start).Milliseconds()
	h.Audit.Record(*rec)
}

func promptText(msgs []upstream.Message) string {
	var b strings.Builder
	for i, m := range msgs {
		if i > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString("[" + m.Role + "]\n" + m.Text)
	}
	return b.String()
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func randomID() string {
	var b [15]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}
