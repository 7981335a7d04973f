package xai

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"

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
	return joinObject(fields), nil
}

// joinObject writes fields as one JSON object with sorted keys. Every value
// is valid JSON already (json.Unmarshal checked the caller's, the gateway
// encoded its own), so unlike json.Marshal it does not scan them again.
func joinObject(fields map[string]json.RawMessage) []byte {
	keys := make([]string, 0, len(fields))
	size := 2
	for k, v := range fields {
		keys = append(keys, k)
		size += len(k) + len(v) + 8
	}
	slices.Sort(keys)
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		name, _ := json.Marshal(k)
		out = append(out, name...)
		out = append(out, ':')
		out = append(out, fields[k]...)
	}
	return append(out, '}')
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
