package grokweb

import (
	"strings"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Flatten renders a whole chat history as the single prompt text of a new
// Grok conversation, because the web app takes one message per request.
// Each turn becomes a block that starts with a role marker on its own line
// ("[system]", "[user]", "[assistant]", or "[tool result for <id>]"),
// and blocks are joined by a blank line, in the order given. Turns without
// text are left out.
//
// Images are not part of the text: Chat uploads them and attaches them to
// the request, so the upstream sees them beside the prompt rather than at
// their place in the history.
func Flatten(msgs []upstream.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		text := strings.TrimSpace(m.Text)
		if text == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString(roleMarker(m))
		b.WriteByte('\n')
		b.WriteString(text)
	}
	return b.String()
}

func roleMarker(m upstream.Message) string {
	role := strings.ToLower(strings.TrimSpace(m.Role))
	if role == "tool" || role == "function" {
		switch {
		case m.ToolCallID != "":
			return "[tool result for " + m.ToolCallID + "]"
		case m.Name != "":
			return "[tool result for " + m.Name + "]"
		}
		return "[tool result]"
	}
	if role == "" {
		role = "user"
	}
	return "[" + role + "]"
}

// prompt returns the message text for req: the new turn alone when it
// continues a conversation with one user message, since the upstream
// already holds the history, and the flattened history otherwise.
func prompt(req upstream.ChatRequest) string {
	if req.ConversationID != "" && len(req.Messages) == 1 && req.Messages[0].Role == "user" {
		return req.Messages[0].Text
	}
	return Flatten(req.Messages)
}
