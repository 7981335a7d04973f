package xai

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// stream writes the response as server-sent chunks: the role, the reasoning,
// the text or the tool calls, the finish reason, the usage when
// stream_options requests it, and [DONE]. With cutAfter >= 0 the
// connection is aborted after that many chunks.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req chatRequest, p plan, cutAfter int) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)

	created := s.now().Unix()
	sent := 0
	send := func(delta map[string]any, finish any, usage *wireUsage) bool {
		if cutAfter >= 0 && sent >= cutAfter {
			panic(http.ErrAbortHandler)
		}
		if sent > 0 && !sleep(r.Context(), s.cfg.TokenDelay) {
			return false
		}
		chunk := map[string]any{"id": p.id, "object": "chat.completion.chunk", "created": created,
			"model": req.Model, "system_fingerprint": "fp_emulated"}
		if delta != nil {
			chunk["choices"] = []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}
		} else {
			chunk["choices"] = []any{}
		}
		if usage != nil {
			chunk["usage"] = usage
		}
		b, _ := json.Marshal(chunk)
		sent++
		if _, err := w.Write(append(append([]byte("data: "), b...), '\n', '\n')); err != nil {
			return false
		}
		return rc.Flush() == nil
	}

	if !send(map[string]any{"role": "assistant", "content": ""}, nil, nil) {
		return
	}
	if p.model.ShowsReasoning {
		for _, part := range split(p.reasoning, 3) {
			if !send(map[string]any{"reasoning_content": part}, nil, nil) {
				return
			}
		}
	}
	for _, part := range split(p.text, s.chunks) {
		if !send(map[string]any{"content": part}, nil, nil) {
			return
		}
	}
	for i, c := range p.calls {
		head := map[string]any{"index": i, "id": c.ID, "type": "function",
			"function": map[string]any{"name": c.Name, "arguments": ""}}
		if !send(map[string]any{"tool_calls": []any{head}}, nil, nil) {
			return
		}
		for _, part := range split(c.Arguments, 3) {
			piece := map[string]any{"index": i, "function": map[string]any{"arguments": part}}
			if !send(map[string]any{"tool_calls": []any{piece}}, nil, nil) {
				return
			}
		}
	}
	if !send(map[string]any{}, p.finishReason(), nil) {
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		u := p.usage.wire()
		if !send(nil, nil, &u) {
			return
		}
	}
	w.Write([]byte("data: [DONE]\n\n"))
	rc.Flush()
}

// split cuts s into at most n pieces of about equal length, on byte
// boundaries that keep UTF-8 runes whole. Joined, the pieces give s back.
func split(s string, n int) []string {
	if s == "" {
		return nil
	}
	runes := []rune(s)
	n = min(max(n, 1), len(runes))
	out := make([]string, 0, n)
	for i := range n {
		from, to := i*len(runes)/n, (i+1)*len(runes)/n
		out = append(out, string(runes[from:to]))
	}
	return out
}

// sleep waits for d or until ctx ends, and reports whether ctx is alive.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
