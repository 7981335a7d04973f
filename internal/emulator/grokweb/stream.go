package grokweb

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// frame is one NDJSON line of a chat stream. Token frames wait
// Config.TokenDelay before they are written.
type frame struct {
	line  []byte
	token bool
}

// stream writes the frames of ex, one flushed line each, applying the
// stream-level part of fault: a slow first byte, a cut or an in-band error.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, ex *exchange, fault Fault) {
	ctx := r.Context()
	frames := s.frames(ex)
	delay := s.cfg.FirstByteDelay
	if fault.Kind == FaultSlowFirstByte {
		delay += fault.Delay
	}
	if !sleep(ctx, delay) {
		return
	}

	// NOTE: grok.com's stream Content-Type is not confirmed by a capture;
	// clients should not depend on it.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for i := 0; i <= len(frames); i++ {
		if i == min(fault.AfterFrames, len(frames)) {
			switch fault.Kind {
			case FaultCut:
				rc.Flush()
				// Aborting leaves the chunked body unterminated, so the client
				// sees an unexpected EOF rather than a clean end.
				panic(http.ErrAbortHandler)
			case FaultErrorFrame:
				w.Write(inBandError())
				rc.Flush()
				return
			}
		}
		if i == len(frames) {
			return
		}
		if frames[i].token && i > 0 && !sleep(ctx, s.cfg.TokenDelay) {
			return
		}
		if _, err := w.Write(frames[i].line); err != nil {
			return
		}
		rc.Flush()
	}
}

// inBandError is the top-level error line grok.com sends inside a 200
// stream when the account runs out of quota mid-answer.
func inBandError() []byte {
	return encodeLine(map[string]rpcError{
		"error": {Code: codeResourceExhausted, Message: "Too many requests", Details: []any{}},
	})
}

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

func encodeLine(v any) []byte {
	line, err := json.Marshal(v)
	if err != nil {
		// Frames are built from maps of strings, numbers and bools only.
		panic(fmt.Sprintf("grokweb: encode frame: %v", err))
	}
	return append(line, '\n')
}

// timestamp formats t the way grok.com frames do.
func timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}

// frames builds the whole stream of ex in the order of a 2026 capture:
// conversation (new chats only), userResponse, uiLayout, llmInfo, thinking
// tokens (expert and heavy), image frames, answer tokens, soft stop,
// finalMetadata (when asked for), modelResponse, title (new chats only).
func (s *Server) frames(ex *exchange) []frame {
	var out []frame
	add := func(v any, token bool) { out = append(out, frame{line: encodeLine(v), token: token}) }
	modelID := ex.modelTurn.ResponseID

	if !ex.followUp {
		add(map[string]any{"result": map[string]any{"conversation": ex.conversationFrame()}}, false)
	}
	add(ex.wrap(map[string]any{
		"userResponse": ex.userResponse(),
		"isThinking":   false,
		"isSoftStop":   false,
		"responseId":   ex.userTurn.ResponseID,
	}), false)
	add(ex.wrap(map[string]any{
		"uiLayout":   ex.uiLayout(),
		"isThinking": false,
		"isSoftStop": false,
		"responseId": modelID,
	}), false)
	add(ex.wrap(map[string]any{
		"llmInfo":    map[string]any{"modelHash": "ZW11bGF0b3I="},
		"isThinking": false,
		"isSoftStop": false,
		"responseId": modelID,
	}), false)

	for _, t := range ex.thinking() {
		add(ex.wrap(t), true)
	}
	for _, f := range ex.imageFrames() {
		add(ex.wrap(f.fields), f.token)
	}
	for _, tok := range splitTokens(ex.answer, s.chunks) {
		add(ex.wrap(map[string]any{
			"token":      tok,
			"isThinking": false,
			"isSoftStop": false,
			"messageTag": "final",
			"responseId": modelID,
		}), true)
	}
	add(ex.wrap(map[string]any{
		"token":      "",
		"isThinking": false,
		"isSoftStop": true,
		"responseId": modelID,
	}), false)

	if ex.req.SendFinalMetadata && !ex.req.DisableTextFollowUps {
		add(ex.wrap(map[string]any{
			"finalMetadata": map[string]any{
				"followUpSuggestions": []any{},
				"feedbackLabels":      []any{},
				"toolsUsed":           map[string]any{},
				"disclaimer":          "",
			},
			"responseId": modelID,
		}), false)
	}
	add(ex.wrap(map[string]any{
		"modelResponse": ex.modelResponse(),
		"isThinking":    false,
		"isSoftStop":    false,
		"responseId":    modelID,
	}), false)
	if !ex.followUp {
		add(map[string]any{"result": map[string]any{"title": map[string]any{"newTitle": ex.title}}}, false)
	}
	return out
}

// wrap puts response fields under result.response, or directly under
// result for follow-ups when the server streams them flat.
func (ex *exchange) wrap(fields map[string]any) map[string]any {
	if ex.followUp && ex.flat {
		return map[string]any{"result": fields}
	}
	return map[string]any{"result": map[string]any{"response": fields}}
}

func (ex *exchange) conversationFrame() map[string]any {
	created := timestamp(ex.createTime)
	return map[string]any{
		"conversationId":   ex.conversationID,
		"title":            "New conversation",
		"starred":          false,
		"createTime":       created,
		"modifyTime":       created,
		"systemPromptName": "",
		"temporary":        ex.temporary,
		"mediaTypes":       []string{},
		"workspaces":       []any{},
		"taskResult":       map[string]any{},
	}
}

func (ex *exchange) userResponse() map[string]any {
	attachments := ex.req.FileAttachments
	if attachments == nil {
		attachments = []string{}
	}
	return map[string]any{
		"responseId":         ex.userTurn.ResponseID,
		"message":            ex.userTurn.Message,
		"sender":             "human",
		"createTime":         timestamp(ex.userTurn.CreateTime),
		"parentResponseId":   ex.userTurn.ParentResponseID,
		"manual":             false,
		"partial":            false,
		"shared":             false,
		"query":              "",
		"queryType":          "",
		"webSearchResults":   []any{},
		"generatedImageUrls": []string{},
		"fileAttachments":    attachments,
		"model":              backendModel(ex.mode),
		"streamErrors":       []any{},
	}
}

func (ex *exchange) uiLayout() map[string]any {
	layout := map[string]any{
		"reasoningUiLayout": "FUNCTION_CALL",
		"willThinkLong":     false,
		"effort":            "LOW",
		"rolloutIds":        []string{},
	}
	if reasoningMode(ex.mode) {
		layout["reasoningUiLayout"] = "SPLIT"
		layout["willThinkLong"] = true
		layout["effort"] = "HIGH"
	}
	if ex.mode == modeHeavy {
		layout["rolloutIds"] = heavyRollouts
	}
	return layout
}

// heavyRollouts are the agents of a heavy-mode answer, in stream order.
var heavyRollouts = []string{"Agent 1", "Agent 2", "Grok"}

// thinking returns the reasoning token frames: one step with a header and
// two summaries for expert, one step per agent with rolloutId for heavy,
// none for the other modes.
func (ex *exchange) thinking() []map[string]any {
	if !reasoningMode(ex.mode) {
		return nil
	}
	rollouts := []string{""}
	if ex.mode == modeHeavy {
		rollouts = heavyRollouts
	}
	var out []map[string]any
	for step, rollout := range rollouts {
		for _, t := range ex.thinkingSteps(rollout) {
			f := map[string]any{
				"token":         t.text,
				"isThinking":    true,
				"isSoftStop":    false,
				"messageTag":    t.tag,
				"messageStepId": step,
				"responseId":    ex.modelTurn.ResponseID,
			}
			if rollout != "" {
				f["rolloutId"] = rollout
			}
			out = append(out, f)
		}
	}
	return out
}

type thought struct{ tag, text string }

func (ex *exchange) thinkingSteps(rollout string) []thought {
	who := "Thinking"
	if rollout != "" {
		who = rollout + " is thinking"
	}
	return []thought{
		{"header", who + " about your request"},
		{"summary", "Reading the last line of the request."},
		{"summary", fmt.Sprintf("Drafting an answer of %d words.", len(strings.Fields(ex.answer)))},
	}
}

// thinkingTrace is the reasoning text as modelResponse reports it.
func (ex *exchange) thinkingTrace() string {
	var parts []string
	for _, f := range ex.thinking() {
		parts = append(parts, f["token"].(string))
	}
	return strings.Join(parts, "\n")
}

func (ex *exchange) modelResponse() map[string]any {
	urls, cards := []string{}, []string{}
	for _, img := range ex.images {
		urls = append(urls, img.finalPath)
		if !ex.imagineModel() {
			cards = append(cards, img.cardJSON(100))
		}
	}
	return map[string]any{
		"responseId":          ex.modelTurn.ResponseID,
		"message":             ex.modelTurn.Message,
		"sender":              "assistant",
		"createTime":          timestamp(ex.modelTurn.CreateTime),
		"parentResponseId":    ex.userTurn.ResponseID,
		"manual":              false,
		"partial":             false,
		"shared":              false,
		"webSearchResults":    []any{},
		"xposts":              []any{},
		"generatedImageUrls":  urls,
		"imageAttachments":    []any{},
		"fileAttachments":     []any{},
		"cardAttachmentsJson": cards,
		"steps":               []any{},
		"metadata": map[string]any{"request_metadata": map[string]any{
			"mode": ex.mode, "model": backendModel(ex.mode), "effort": "low",
		}},
		"model": backendModel(ex.mode),
		"requestMetadata": map[string]any{
			"model": backendModel(ex.mode), "mode": legacyModeName(ex.mode), "effort": "LOW",
		},
		"thinkingTrace": ex.thinkingTrace(),
		"streamErrors":  []any{},
	}
}

// fullMessage is modelResponse.message: the image render tags of the card
// form followed by the answer text, exactly what the token frames carry.
func (ex *exchange) fullMessage() string {
	var b strings.Builder
	if !ex.imagineModel() {
		for _, img := range ex.images {
			b.WriteString(img.renderTag())
		}
	}
	b.WriteString(ex.answer)
	return b.String()
}

// minAnswerWords is the least number of words in an answer.
const minAnswerWords = 40

const answerFiller = "This reply comes from the local Grok web emulator, so tests can " +
	"check streaming, quota accounting and conversation handling without the real service."

// composeAnswer returns the deterministic answer to message: it names the
// mode and the turn number, quotes the last line of message, and has at
// least max(40, minWords) words.
func composeAnswer(message, mode string, turn, minWords int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Emulated %s answer, turn %d. You wrote: %s", mode, turn, lastLine(message))
	words := len(strings.Fields(b.String()))
	fillerWords := len(strings.Fields(answerFiller))
	for words < max(minAnswerWords, minWords) {
		b.WriteString(" ")
		b.WriteString(answerFiller)
		words += fillerWords
	}
	return b.String()
}

// lastLine returns the last non-blank line of message, trimmed. Proxies
// flatten the history into one message, so this is the newest user text.
func lastLine(message string) string {
	lines := strings.Split(message, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if line := strings.TrimSpace(lines[i]); line != "" {
			return line
		}
	}
	return "(no text)"
}

// titleFor returns the title of a new conversation: the first five words
// of the last line of its first message.
func titleFor(message string) string {
	words := strings.Fields(lastLine(message))
	return strings.Join(words[:min(len(words), 5)], " ")
}

// splitTokens cuts text after spaces into n pieces of nearly equal word
// count, fewer when text has fewer words. The pieces join back to text.
func splitTokens(text string, n int) []string {
	words := strings.SplitAfter(text, " ")
	n = min(n, len(words))
	tokens := make([]string, 0, n)
	for i := range n {
		tokens = append(tokens, strings.Join(words[i*len(words)/n:(i+1)*len(words)/n], ""))
	}
	return tokens
}
