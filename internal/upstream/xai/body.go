package xai

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// requestBody returns the JSON body for /chat/completions. When req.Body
// holds the caller's OpenAI request, every field of it is kept and only
// model, stream and stream_options are set by the gateway. Otherwise the
// body is built from req.Messages.
func requestBody(req upstream.ChatRequest) ([]byte, error) {
	fields := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(req.Body)) > 0 {
		if err := json.Unmarshal(req.Body, &fields); err != nil {
			return nil, err
		}
		if fields == nil {
			return nil, errors.New("the body is null")
		}
	} else {
		msgs, err := json.Marshal(wireMessages(req.Messages))
		if err != nil {
			return nil, err
		}
		fields["messages"] = msgs
	}

	fields["model"], _ = json.Marshal(req.Model)
	fields["stream"], _ = json.Marshal(req.Stream)
	delete(fields, "stream_options")
	if req.Stream {
		// Usage comes only in the last chunk, and only when asked for.
		fields["stream_options"] = json.RawMessage(`{"include_usage":true}`)
	}
	return json.Marshal(fields)
}

// wireMessage is one message in OpenAI's request format.
type wireMessage struct {
	Role       string `json:"role"`
	Content    any    `json:"content"` // a string, or []wirePart with images
	Name       string `json:"name,omitempty"`
	ToolCallID string `json:"tool_call_id,omitempty"`
}

type wirePart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *imageURL `json:"image_url,omitempty"`
}

type imageURL struct {
	URL string `json:"url"`
}

// wireMessages converts upstream messages to OpenAI messages. Images
// travel as base64 data URLs.
func wireMessages(msgs []upstream.Message) []wireMessage {
	out := make([]wireMessage, 0, len(msgs))
	for _, m := range msgs {
		wm := wireMessage{Role: m.Role, Content: m.Text, Name: m.Name, ToolCallID: m.ToolCallID}
		if len(m.Images) > 0 {
			parts := []wirePart{{Type: "text", Text: m.Text}}
			for _, img := range m.Images {
				u := "data:" + img.MediaType + ";base64," + base64.StdEncoding.EncodeToString(img.Data)
				parts = append(parts, wirePart{Type: "image_url", ImageURL: &imageURL{URL: u}})
			}
			wm.Content = parts
		}
		out = append(out, wm)
	}
	return out
}
