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
	if len(bytes.TrimSpace(req.Body)) > 0 {
		if out, ok := rewriteBody(req.Body, req.Model, req.Stream); ok {
			return out, nil
		}
		return requestBodyDecoded(req.Body, req.Model, req.Stream)
	}
	msgs, err := json.Marshal(wireMessages(req.Messages))
	if err != nil {
		return nil, err
	}
	return withGatewayFields(map[string]json.RawMessage{"messages": msgs}, req.Model, req.Stream), nil
}

// requestBodyDecoded is requestBody for a caller's body that rewriteBody
// does not take: it decodes the top-level fields and encodes them again.
func requestBodyDecoded(body []byte, model string, stream bool) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, err
	}
	if fields == nil {
		return nil, errors.New("the body is null")
	}
	return withGatewayFields(fields, model, stream), nil
}

// withGatewayFields sets model, stream and stream_options in fields and
// returns them as one object.
func withGatewayFields(fields map[string]json.RawMessage, model string, stream bool) []byte {
	fields["model"], _ = json.Marshal(model)
	fields["stream"], _ = json.Marshal(stream)
	delete(fields, "stream_options")
	if stream {
		// Usage comes only in the last chunk, and only when asked for.
		fields["stream_options"] = json.RawMessage(`{"include_usage":true}`)
	}
	return joinObject(fields)
}

// setFields are the top-level fields the gateway sets in a passed-through
// body. rewriteBody drops the caller's.
var setFields = []string{"model", "stream", "stream_options"}

// rewriteBody copies the top-level fields of the JSON object body, except
// setFields, byte for byte, and appends the gateway's model, stream and
// stream_options. It scans the body once and decodes none of its values.
// It reports false for anything but a well-formed object, and for keys
// written with escapes, which requestBody then handles by decoding.
func rewriteBody(body []byte, model string, stream bool) ([]byte, bool) {
	out := make([]byte, 0, len(body)+len(model)+64)
	out = append(out, '{')
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}

	i = skipSpace(body, i+1)
	first := true
	for i < len(body) && body[i] != '}' {
		if !first {
			if body[i] != ',' {
				return nil, false
			}
			i = skipSpace(body, i+1)
		}
		first = false
		keyEnd, ok := skipString(body, i)
		if !ok || bytes.IndexByte(body[i:keyEnd], '\\') >= 0 {
			return nil, false
		}
		key := body[i:keyEnd]
		i = skipSpace(body, keyEnd)
		if i >= len(body) || body[i] != ':' {
			return nil, false
		}
		i = skipSpace(body, i+1)
		valueEnd, ok := skipValue(body, i)
		if !ok {
			return nil, false
		}
		if !slices.Contains(setFields, string(key[1:len(key)-1])) {
			out = append(out, key...)
			out = append(out, ':')
			out = append(out, body[i:valueEnd]...)
			out = append(out, ',')
		}
		i = skipSpace(body, valueEnd)
	}
	if i >= len(body) || skipSpace(body, i+1) != len(body) {
		return nil, false
	}

	name, _ := json.Marshal(model)
	out = append(out, `"model":`...)
	out = append(out, name...)
	if stream {
		out = append(out, `,"stream":true,"stream_options":{"include_usage":true}}`...)
	} else {
		out = append(out, `,"stream":false}`...)
	}
	return out, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the JSON string that starts at i.
func skipString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index after the JSON value that starts at i. It
// checks the nesting of brackets and strings, not the grammar of every
// value: the caller's decoder has checked that already, and the upstream
// checks the result.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		var stack []byte
		for i < len(b) {
			switch c := b[i]; c {
			case '"':
				end, ok := skipString(b, i)
				if !ok {
					return 0, false
				}
				i = end
				continue
			case '{', '[':
				stack = append(stack, c)
			case '}', ']':
				if len(stack) == 0 || (c == '}') != (stack[len(stack)-1] == '{') {
					return 0, false
				}
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	}
	start := i
	for i < len(b) && !endsLiteral(b[i]) {
		i++
	}
	return i, i > start
}

// endsLiteral reports whether c ends a number, true, false or null.
func endsLiteral(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\r', '\n':
		return true
	}
	return false
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
