package openai

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Default limits on one chat request, beyond the body size cap.
const (
	MaxMessages     = 2048
	MaxPromptBytes  = 4 << 20 // total text of all messages
	MaxImagesBytes  = 20 << 20
	maxJSONDepth    = 64
	maxImagesPerReq = 16
)

// Limits bounds one chat request. A zero field takes its default:
// MaxMessages and MaxPromptBytes.
type Limits struct {
	MaxMessages    int // messages in one request
	MaxPromptBytes int // text of all messages, in bytes
}

func (l Limits) messages() int {
	if l.MaxMessages > 0 {
		return l.MaxMessages
	}
	return MaxMessages
}

func (l Limits) promptBytes() int {
	if l.MaxPromptBytes > 0 {
		return l.MaxPromptBytes
	}
	return MaxPromptBytes
}

// ChatRequest is the part of an OpenAI chat completion request the gateway
// reads. Fields it does not know are kept in the raw body for passthrough.
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []ChatMessage   `json:"messages"`
	Stream              bool            `json:"stream"`
	StreamOptions       *StreamOptions  `json:"stream_options"`
	N                   *int            `json:"n"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	Tools               json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	User                string          `json:"user"`
}

// StreamOptions is the stream_options object.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// ChatMessage is one entry of messages. Content is a string, an array of
// parts, or null.
type ChatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

type contentPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url"`
}

// decodeJSON reads a bounded JSON body into v, turning every decoding
// problem into a 400 that names the field when it can.
func decodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Type: TypeInvalidRequest, Code: "request_too_large",
				Message: fmt.Sprintf("The request body is larger than %d bytes.", tooBig.Limit)}
		}
		return BadRequest("", "invalid_body", "The request body could not be read.")
	}
	return decodeBody(body, v)
}

func decodeBody(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return BadRequest("", "invalid_json", "The request body is empty; send a JSON object.")
	}
	if !utf8.Valid(body) {
		return BadRequest("", "invalid_encoding", "The request body is not valid UTF-8.")
	}
	if depth := jsonDepth(body); depth > maxJSONDepth {
		return BadRequest("", "invalid_json", "The request body nests deeper than %d levels.", maxJSONDepth)
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return BadRequest(typeErr.Field, "invalid_type",
				"Invalid type for %q: expected %s, got %s.", typeErr.Field, typeErr.Type.Kind(), typeErr.Value)
		}
		return BadRequest("", "invalid_json", "We could not parse the JSON body of your request. (%s)", sanitizeJSONError(err))
	}
	return nil
}

// jsonDepth returns the deepest nesting of objects and arrays in b, skipping
// string contents.
func jsonDepth(b []byte) int {
	depth, maxDepth, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			if depth > maxDepth {
				maxDepth = depth
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return maxDepth
}

// sanitizeJSONError keeps the decoder's description without echoing input.
func sanitizeJSONError(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return "invalid JSON"
}

// validate checks the request fields the gateway relies on.
func (req *ChatRequest) validate(lim Limits) error {
	if req.Model == "" {
		return BadRequest("model", "missing_required_parameter", "You must provide a model parameter.")
	}
	if len(req.Messages) == 0 {
		return BadRequest("messages", "missing_required_parameter", "You must provide at least one message.")
	}
	if len(req.Messages) > lim.messages() {
		return BadRequest("messages", "too_many_messages", "Too many messages: %d is above the limit of %d.", len(req.Messages), lim.messages())
	}
	if req.N != nil && *req.N != 1 {
		if *req.N < 1 {
			return BadRequest("n", "invalid_value", "n must be at least 1, got %d.", *req.N)
		}
		return BadRequest("n", "unsupported_value", "n > 1 is not supported: this gateway returns one choice per request.")
	}
	if req.StreamOptions != nil && !req.Stream {
		return BadRequest("stream_options", "invalid_value", "stream_options is only allowed when stream is true.")
	}
	return req.validateRanges()
}

func (req *ChatRequest) validateRanges() error {
	if t := req.Temperature; t != nil && (*t < 0 || *t > 2) {
		return BadRequest("temperature", "invalid_value", "temperature must be between 0 and 2, got %v.", *t)
	}
	if p := req.TopP; p != nil && (*p < 0 || *p > 1) {
		return BadRequest("top_p", "invalid_value", "top_p must be between 0 and 1, got %v.", *p)
	}
	if m := req.MaxTokens; m != nil && *m < 1 {
		return BadRequest("max_tokens", "invalid_value", "max_tokens must be at least 1, got %d.", *m)
	}
	if m := req.MaxCompletionTokens; m != nil && *m < 1 {
		return BadRequest("max_completion_tokens", "invalid_value", "max_completion_tokens must be at least 1, got %d.", *m)
	}
	if p := req.PresencePenalty; p != nil && (*p < -2 || *p > 2) {
		return BadRequest("presence_penalty", "invalid_value", "presence_penalty must be between -2 and 2, got %v.", *p)
	}
	if p := req.FrequencyPenalty; p != nil && (*p < -2 || *p > 2) {
		return BadRequest("frequency_penalty", "invalid_value", "frequency_penalty must be between -2 and 2, got %v.", *p)
	}
	return nil
}

// hasTools reports whether the request names tools or a tool choice.
func (req *ChatRequest) hasTools() bool {
	return nonNull(req.Tools) || nonNull(req.ToolChoice)
}

func nonNull(raw json.RawMessage) bool {
	s := bytes.TrimSpace(raw)
	return len(s) > 0 && !bytes.Equal(s, []byte("null")) && !bytes.Equal(s, []byte("[]"))
}

var validRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true}

// messageParams holds the param names of the first messages, so that a
// request does not format one per message.
var messageParams = func() (names [64]string) {
	for i := range names {
		names[i] = fmt.Sprintf("messages[%d]", i)
	}
	return names
}()

// messageParam returns the param name of message i in error objects.
func messageParam(i int) string {
	if i < len(messageParams) {
		return messageParams[i]
	}
	return fmt.Sprintf("messages[%d]", i)
}

// upstreamMessages converts the OpenAI messages to upstream messages,
// checking roles, content parts and sizes.
func (req *ChatRequest) upstreamMessages(lim Limits) ([]upstream.Message, error) {
	out := make([]upstream.Message, 0, len(req.Messages))
	textBytes, imageBytes, images := 0, 0, 0
	for i, m := range req.Messages {
		param := messageParam(i)
		if !validRoles[m.Role] {
			if m.Role == "" {
				return nil, BadRequest(param+".role", "missing_required_parameter", "Missing required parameter: %q.", param+".role")
			}
			return nil, BadRequest(param+".role", "invalid_value", "Invalid value for %q: %q is not one of system, developer, user, assistant, tool.", param+".role", truncate(m.Role, 32))
		}
		msg, err := convertContent(param, m)
		if err != nil {
			return nil, err
		}
		textBytes += len(msg.Text)
		for _, img := range msg.Images {
			imageBytes += len(img.Data)
			images++
		}
		out = append(out, msg)
	}
	if textBytes > lim.promptBytes() {
		return nil, BadRequest("messages", "context_length_exceeded", "The messages hold %d bytes of text, above the limit of %d.", textBytes, lim.promptBytes())
	}
	if images > maxImagesPerReq || imageBytes > MaxImagesBytes {
		return nil, BadRequest("messages", "too_many_images", "At most %d images and %d bytes of image data are allowed.", maxImagesPerReq, MaxImagesBytes)
	}
	return out, nil
}

func convertContent(param string, m ChatMessage) (upstream.Message, error) {
	role := m.Role
	if role == "developer" {
		role = "system"
	}
	msg := upstream.Message{Role: role, Name: m.Name, ToolCallID: m.ToolCallID}
	raw := bytes.TrimSpace(m.Content)
	switch {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
		if role != "assistant" {
			return msg, BadRequest(param+".content", "missing_required_parameter", "Missing required parameter: %q.", param+".content")
		}
	case raw[0] == '"' && len(raw) >= 2 && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0:
		// The body was decoded as valid JSON and checked to be UTF-8, so a
		// string without escapes is its bytes between the quotes.
		msg.Text = string(raw[1 : len(raw)-1])
	case raw[0] == '"':
		if err := json.Unmarshal(raw, &msg.Text); err != nil {
			return msg, BadRequest(param+".content", "invalid_type", "Invalid type for %q: expected a string or an array of content parts.", param+".content")
		}
	case raw[0] == '[':
		if err := convertParts(param, raw, &msg); err != nil {
			return msg, err
		}
	default:
		return msg, BadRequest(param+".content", "invalid_type", "Invalid type for %q: expected a string or an array of content parts.", param+".content")
	}
	if nonNull(m.ToolCalls) {
		msg.Text = joinText(msg.Text, "[tool calls] "+string(m.ToolCalls))
	}
	return msg, nil
}

func convertParts(param string, raw []byte, msg *upstream.Message) error {
	var parts []contentPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return BadRequest(param+".content", "invalid_type", "Invalid type for %q: each content part must be an object.", param+".content")
	}
	var texts []string
	for j, p := range parts {
		pp := fmt.Sprintf("%s.content[%d]", param, j)
		switch p.Type {
		case "text", "input_text":
			texts = append(texts, p.Text)
		case "image_url":
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return BadRequest(pp+".image_url.url", "missing_required_parameter", "Missing required parameter: %q.", pp+".image_url.url")
			}
			img, err := decodeDataURL(pp+".image_url.url", p.ImageURL.URL)
			if err != nil {
				return err
			}
			msg.Images = append(msg.Images, img)
		case "":
			return BadRequest(pp+".type", "missing_required_parameter", "Missing required parameter: %q.", pp+".type")
		default:
			return BadRequest(pp+".type", "invalid_value", "Invalid content part type %q: expected text or image_url.", truncate(p.Type, 32))
		}
	}
	msg.Text = strings.Join(texts, "\n")
	return nil
}

// decodeDataURL accepts data:image/...;base64 URLs. Remote http(s) image
// URLs are rejected: fetching caller-named hosts is not offered.
func decodeDataURL(param, url string) (upstream.Image, error) {
	if strings.HasPrefix(url, "http://") || strings.HasPrefix(url, "https://") {
		return upstream.Image{}, BadRequest(param, "unsupported_image_url", "Remote image URLs are not fetched; send the image as a data: URL with base64 content.")
	}
	meta, data, ok := strings.Cut(strings.TrimPrefix(url, "data:"), ",")
	if !strings.HasPrefix(url, "data:") || !ok || !strings.HasSuffix(meta, ";base64") {
		return upstream.Image{}, BadRequest(param, "invalid_image_url", "Invalid image URL: expected data:image/<type>;base64,<data>.")
	}
	mediaType := strings.TrimSuffix(meta, ";base64")
	switch mediaType {
	case "image/png", "image/jpeg", "image/webp", "image/gif":
	default:
		return upstream.Image{}, BadRequest(param, "invalid_image_format", "Unsupported image type %q: use png, jpeg, webp or gif.", truncate(mediaType, 32))
	}
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return upstream.Image{}, BadRequest(param, "invalid_image_url", "The image data is not valid base64.")
	}
	return upstream.Image{MediaType: mediaType, Data: b}, nil
}

func joinText(a, b string) string {
	if a == "" {
		return b
	}
	return a + "\n" + b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
