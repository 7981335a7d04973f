package openai

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Wire types of chat completion responses. Only the fields the gateway
// fills are declared; nil pointers encode as null where OpenAI sends null.

type completion struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"` // "chat.completion"
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	Choices           []completionChoice `json:"choices"`
	Usage             *usage             `json:"usage"`
	SystemFingerprint *string            `json:"system_fingerprint"`
}

type completionChoice struct {
	Index        int             `json:"index"`
	Message      responseMessage `json:"message"`
	Logprobs     *struct{}       `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type responseMessage struct {
	Role             string          `json:"role"`
	Content          *string         `json:"content"`
	ReasoningContent string          `json:"reasoning_content,omitempty"`
	Refusal          *string         `json:"refusal"`
	ToolCalls        []toolCall      `json:"tool_calls,omitempty"`
	Annotations      json.RawMessage `json:"annotations,omitempty"`
}

type toolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type usage struct {
	PromptTokens            int                  `json:"prompt_tokens"`
	CompletionTokens        int                  `json:"completion_tokens"`
	TotalTokens             int                  `json:"total_tokens"`
	CompletionTokensDetails *completionTokDetail `json:"completion_tokens_details,omitempty"`
}

type completionTokDetail struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

type chunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"` // "chat.completion.chunk"
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	SystemFingerprint *string       `json:"system_fingerprint"`
	Choices           []chunkChoice `json:"choices"`
	Usage             *usage        `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int       `json:"index"`
	Delta        delta     `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type delta struct {
	Role             string     `json:"role,omitempty"`
	Content          *string    `json:"content,omitempty"`
	ReasoningContent string     `json:"reasoning_content,omitempty"`
	ToolCalls        []toolCall `json:"tool_calls,omitempty"`
}

// sseWriter writes server-sent events. The stream handler flushes them
// whenever the upstream has no further event ready, so every upstream token
// reaches the client as it arrives, and tokens that arrived together leave
// in one write.
type sseWriter struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	buf       []byte
	started   bool
	unflushed bool // events were written since the last flush
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), buf: make([]byte, 0, 512)}
}

// start sends the status line and the stream headers.
func (s *sseWriter) start() {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	s.started = true
}

// event writes one "data: <json>" event and flushes it.
func (s *sseWriter) event(v any) error {
	if err := s.write(v); err != nil {
		return err
	}
	return s.flush()
}

// write writes one "data: <json>" event without flushing it.
func (s *sseWriter) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.writeData(b)
}

// data writes one event with payload as its data and flushes it.
func (s *sseWriter) data(payload []byte) error {
	if err := s.writeData(payload); err != nil {
		return err
	}
	return s.flush()
}

func (s *sseWriter) writeData(payload []byte) error {
	s.buf = append(s.buf[:0], "data: "...)
	s.buf = append(s.buf, payload...)
	s.buf = append(s.buf, '\n', '\n')
	if _, err := s.w.Write(s.buf); err != nil {
		return err
	}
	s.unflushed = true
	return nil
}

// flush sends the events written so far.
func (s *sseWriter) flush() error {
	s.unflushed = false
	return s.rc.Flush()
}

// done writes the closing [DONE] event and flushes the stream.
func (s *sseWriter) done() error {
	return s.data([]byte("[DONE]"))
}

// jsonContentType is the Content-Type value of JSON responses, shared by
// all of them. The server copies header values when it writes them, and
// nothing changes one in place.
var jsonContentType = []string{"application/json"}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"message":"encoding failed","type":"server_error","param":null,"code":null}}`)
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	w.Write(b)
	// Send the response now rather than when the handler chain returns, so
	// that the client does not wait for the access log and the audit record.
	http.NewResponseController(w).Flush()
}
