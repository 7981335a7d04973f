package xai

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// model is one model the emulator serves.
type model struct {
	ID    string
	Image bool
	// Reasoning models spend reasoning tokens; ShowsReasoning ones also
	// stream their reasoning as reasoning_content, as grok-3-mini does.
	Reasoning      bool
	ShowsReasoning bool
}

// models is the emulated model list. The ids are those of the public xAI
// API in 2025.
var models = []model{
	{ID: "grok-3"},
	{ID: "grok-3-mini", Reasoning: true, ShowsReasoning: true},
	{ID: "grok-4", Reasoning: true},
	{ID: "grok-4-fast-reasoning", Reasoning: true},
	{ID: "grok-4-fast-non-reasoning"},
	{ID: "grok-code-fast-1", Reasoning: true, ShowsReasoning: true},
	{ID: "grok-2-image", Image: true},
}

func findModel(id string) (model, bool) {
	i := slices.IndexFunc(models, func(m model) bool { return m.ID == id })
	if i < 0 {
		return model{}, false
	}
	return models[i], true
}

// chatRequest is the part of a chat request the emulator reads.
type chatRequest struct {
	Model         string          `json:"model"`
	Messages      []chatMessage   `json:"messages"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	Tools         []tool          `json:"tools"`
	ToolChoice    json.RawMessage `json:"tool_choice"`
	N             *int            `json:"n"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCallID string          `json:"tool_call_id"`
}

type tool struct {
	Type     string `json:"type"`
	Function struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// text returns a message's text: the string content, or its text parts
// joined by newlines.
func (m chatMessage) text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	json.Unmarshal(m.Content, &parts)
	var texts []string
	for _, p := range parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// Usage is the token accounting of one response, as the emulator reported
// it. CompletionTokens excludes ReasoningTokens, and TotalTokens is the
// sum of all three, as the xAI API counts them.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	ReasoningTokens  int `json:"reasoning_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// plan is the response the emulator returns to one chat request.
type plan struct {
	id        string
	model     model
	reasoning string
	text      string
	calls     []toolCall
	usage     Usage
}

type toolCall struct {
	ID        string
	Name      string
	Arguments string
}

func (p plan) finishReason() string {
	if len(p.calls) > 0 {
		return "tool_calls"
	}
	return "stop"
}

// handleChat serves POST /v1/chat/completions.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request, k string) {
	s.countChat(k)
	f, faulted := s.takeFault(k)
	if faulted && writeFault(w, f) {
		return
	}
	var req chatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "The request body is not valid JSON.")
		return
	}
	p, status, msg := s.plan(req)
	if status != 0 {
		code := codeInvalidArgument
		if status == http.StatusNotFound {
			code = codeNotFound
		}
		writeError(w, status, code, msg)
		return
	}
	s.setLastUsage(p.usage)
	if faulted && f.Kind == FaultSlowFirstByte {
		sleep(r.Context(), f.Delay)
	}
	if !req.Stream {
		writeJSON(w, http.StatusOK, s.completion(req, p))
		return
	}
	cutAfter := -1
	if faulted && f.Kind == FaultCut {
		cutAfter = f.AfterChunks
	}
	s.stream(w, r, req, p, cutAfter)
}

// plan checks the request and decides the response. A non-zero status is a
// rejection with its message.
func (s *Server) plan(req chatRequest) (plan, int, string) {
	if req.Model == "" {
		return plan{}, http.StatusBadRequest, "model is required."
	}
	m, ok := findModel(req.Model)
	if !ok || m.Image {
		return plan{}, http.StatusNotFound, fmt.Sprintf("The model %s does not exist or your team does not have access to it.", req.Model)
	}
	if len(req.Messages) == 0 {
		return plan{}, http.StatusBadRequest, "messages must not be empty."
	}
	if req.N != nil && *req.N != 1 {
		return plan{}, http.StatusBadRequest, "Only n=1 is supported."
	}
	choice, msg := parseToolChoice(req.ToolChoice, req.Tools)
	if msg != "" {
		return plan{}, http.StatusBadRequest, msg
	}

	p := plan{id: newID(), model: m}
	last := req.Messages[len(req.Messages)-1]
	switch {
	case last.Role == "tool":
		p.text = "The tool returned: " + last.text()
	case choice != "none" && len(req.Tools) > 0:
		p.calls = chooseCalls(req.Tools, choice, last.text())
	}
	if len(p.calls) == 0 && p.text == "" {
		p.text = answerText(last.text(), s.chunks)
	}
	if m.Reasoning {
		p.reasoning = "Thinking about: " + last.text()
	}
	p.usage = countUsage(req.Messages, p)
	return p, 0, ""
}

// parseToolChoice returns "none", "auto", "required" or a function name.
func parseToolChoice(raw json.RawMessage, tools []tool) (string, string) {
	for i, t := range tools {
		if t.Type != "function" || t.Function.Name == "" {
			return "", fmt.Sprintf("tools[%d] must be a function with a name.", i)
		}
	}
	if len(raw) == 0 || string(raw) == "null" {
		return "auto", ""
	}
	if len(tools) == 0 {
		return "", "tool_choice is only allowed when tools are given."
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		if mode != "none" && mode != "auto" && mode != "required" {
			return "", fmt.Sprintf("tool_choice %q is not none, auto or required.", mode)
		}
		return mode, ""
	}
	var named struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(raw, &named) != nil || named.Function.Name == "" {
		return "", "tool_choice must be a string or a function object."
	}
	if !slices.ContainsFunc(tools, func(t tool) bool { return t.Function.Name == named.Function.Name }) {
		return "", fmt.Sprintf("tool_choice names %q, which is not in tools.", named.Function.Name)
	}
	return named.Function.Name, ""
}

// chooseCalls picks the tools to call: the named one, else every tool
// whose name appears in the prompt, else with "required" the first tool.
func chooseCalls(tools []tool, choice, prompt string) []toolCall {
	var picked []tool
	for _, t := range tools {
		switch choice {
		case "auto", "required":
			if strings.Contains(prompt, t.Function.Name) {
				picked = append(picked, t)
			}
		case t.Function.Name:
			picked = append(picked, t)
		}
	}
	if len(picked) == 0 && choice == "required" {
		picked = tools[:1]
	}
	calls := make([]toolCall, 0, len(picked))
	for _, t := range picked {
		calls = append(calls, toolCall{ID: "call_" + newID()[:24], Name: t.Function.Name, Arguments: arguments(t.Function.Parameters)})
	}
	return calls
}

// arguments builds call arguments that satisfy a JSON schema's top-level
// properties: the first enum value, or a fixed value of the property's type.
func arguments(schema json.RawMessage) string {
	var s struct {
		Properties map[string]struct {
			Type string `json:"type"`
			Enum []any  `json:"enum"`
		} `json:"properties"`
	}
	json.Unmarshal(schema, &s)
	args := make(map[string]any, len(s.Properties))
	for name, p := range s.Properties {
		switch {
		case len(p.Enum) > 0:
			args[name] = p.Enum[0]
		case p.Type == "number" || p.Type == "integer":
			args[name] = 1
		case p.Type == "boolean":
			args[name] = true
		case p.Type == "array":
			args[name] = []any{}
		case p.Type == "object":
			args[name] = map[string]any{}
		default:
			args[name] = "emulated " + name
		}
	}
	b, _ := json.Marshal(args)
	return string(b)
}

// answerText echoes the prompt and pads the answer to at least n words.
func answerText(prompt string, n int) string {
	words := strings.Fields("Echo: " + prompt)
	filler := strings.Fields("This answer comes from the xAI API emulator and carries no meaning.")
	for i := 0; len(words) < n; i++ {
		words = append(words, filler[i%len(filler)])
	}
	return strings.Join(words, " ")
}

// countUsage estimates tokens as one per four bytes of prompt, one per
// word of answer, and for reasoning models a reasoning count that grows
// with the prompt.
func countUsage(msgs []chatMessage, p plan) Usage {
	var u Usage
	for _, m := range msgs {
		u.PromptTokens += 3 + (len(m.text())+3)/4
	}
	u.CompletionTokens = len(strings.Fields(p.text))
	for _, c := range p.calls {
		u.CompletionTokens += 4 + len(c.Arguments)/4
	}
	if p.model.Reasoning {
		u.ReasoningTokens = 16 + 2*len(strings.Fields(p.reasoning))
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens + u.ReasoningTokens
	return u
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// wireUsage is usage in the API's format.
type wireUsage struct {
	PromptTokens            int            `json:"prompt_tokens"`
	CompletionTokens        int            `json:"completion_tokens"`
	TotalTokens             int            `json:"total_tokens"`
	PromptTokensDetails     map[string]int `json:"prompt_tokens_details"`
	CompletionTokensDetails map[string]int `json:"completion_tokens_details"`
}

func (u Usage) wire() wireUsage {
	return wireUsage{
		PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens,
		PromptTokensDetails:     map[string]int{"text_tokens": u.PromptTokens, "cached_tokens": 0, "image_tokens": 0},
		CompletionTokensDetails: map[string]int{"reasoning_tokens": u.ReasoningTokens},
	}
}

// completion returns the whole answer as one JSON object.
func (s *Server) completion(req chatRequest, p plan) map[string]any {
	msg := map[string]any{"role": "assistant", "content": p.text}
	if p.model.ShowsReasoning {
		msg["reasoning_content"] = p.reasoning
	}
	if len(p.calls) > 0 {
		calls := make([]map[string]any, 0, len(p.calls))
		for _, c := range p.calls {
			calls = append(calls, map[string]any{"id": c.ID, "type": "function",
				"function": map[string]any{"name": c.Name, "arguments": c.Arguments}})
		}
		msg["tool_calls"] = calls
		if p.text == "" {
			msg["content"] = nil
		}
	}
	return map[string]any{
		"id": p.id, "object": "chat.completion", "created": s.now().Unix(), "model": req.Model,
		"choices":            []any{map[string]any{"index": 0, "message": msg, "finish_reason": p.finishReason()}},
		"usage":              p.usage.wire(),
		"system_fingerprint": "fp_emulated",
	}
}
