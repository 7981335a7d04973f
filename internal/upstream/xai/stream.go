package xai

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Wire types of OpenAI-format responses, as far as the gateway reads them.

type wireChunk struct {
	ID      string          `json:"id"`
	Model   string          `json:"model"`
	Choices []wireChoice    `json:"choices"`
	Usage   *wireUsage      `json:"usage"`
	Error   json.RawMessage `json:"error"`
}

type wireChoice struct {
	Index        int       `json:"index"`
	Delta        wireDelta `json:"delta"`   // streamed chunks
	Message      wireDelta `json:"message"` // whole answers
	FinishReason *string   `json:"finish_reason"`
}

type wireDelta struct {
	Content          *string        `json:"content"`
	ReasoningContent string         `json:"reasoning_content"`
	ToolCalls        []wireToolCall `json:"tool_calls"`
}

type wireToolCall struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type wireUsage struct {
	PromptTokens            int `json:"prompt_tokens"`
	CompletionTokens        int `json:"completion_tokens"`
	TotalTokens             int `json:"total_tokens"`
	CompletionTokensDetails *struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

// usage converts upstream usage to OpenAI's convention, in which
// completion_tokens includes reasoning tokens. xAI counts reasoning tokens
// apart, so that total = prompt + completion + reasoning; such a report is
// folded into completion_tokens.
func (u *wireUsage) usage() *upstream.Usage {
	if u == nil {
		return nil
	}
	out := &upstream.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
	if u.CompletionTokensDetails != nil {
		out.ReasoningTokens = u.CompletionTokensDetails.ReasoningTokens
	}
	if out.ReasoningTokens > 0 && out.TotalTokens == out.PromptTokens+out.CompletionTokens+out.ReasoningTokens {
		out.CompletionTokens += out.ReasoningTokens
	}
	if out.TotalTokens == 0 {
		out.TotalTokens = out.PromptTokens + out.CompletionTokens
	}
	return out
}

// events turns one choice into upstream events, in the order OpenAI
// clients expect them: reasoning, text, tool calls.
func (c wireChoice) events(d wireDelta) []upstream.Event {
	var evs []upstream.Event
	if d.ReasoningContent != "" {
		evs = append(evs, upstream.Event{Kind: upstream.EventReasoning, Text: d.ReasoningContent})
	}
	if d.Content != nil && *d.Content != "" {
		evs = append(evs, upstream.Event{Kind: upstream.EventText, Text: *d.Content})
	}
	for i, tc := range d.ToolCalls {
		index := i
		if tc.Index != nil {
			index = *tc.Index
		}
		evs = append(evs, upstream.Event{Kind: upstream.EventToolCall, ToolCall: &upstream.ToolCallDelta{
			Index: index, ID: tc.ID, Type: tc.Type, Name: tc.Function.Name, Arguments: tc.Function.Arguments,
		}})
	}
	return evs
}

// readCompletion reads a whole response and returns it as a finished stream.
func readCompletion(body io.Reader) (upstream.Stream, error) {
	var c wireChunk
	if err := decodeBody(body, &c); err != nil {
		return nil, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Status: 200, Message: "the response body is not valid JSON", Err: err}
	}
	if len(c.Choices) == 0 {
		return nil, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Status: 200, Message: "the response has no choices"}
	}
	ch := c.Choices[0]
	more := ch.events(ch.Message)
	evs := make([]upstream.Event, 0, len(more)+2)
	evs = append(evs, upstream.Event{Kind: upstream.EventStart, ResponseID: c.ID, Model: c.Model})
	evs = append(evs, more...)
	done := upstream.Event{Kind: upstream.EventDone, ResponseID: c.ID, Usage: c.Usage.usage()}
	if ch.FinishReason != nil {
		done.FinishReason = *ch.FinishReason
	}
	return &listStream{events: append(evs, done)}, nil
}

// bodyBuffers holds the buffers that decodeBody reads responses into.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody is the largest buffer that goes back to bodyBuffers, so
// that one large response does not stay in memory.
const maxPooledBody = 64 << 10

// decodeBody reads a JSON document of at most maxBodyBytes from body into
// v, through a pooled buffer. Anything but white space after the value is
// an error.
func decodeBody(body io.Reader, v any) error {
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledBody {
			buf.Reset()
			bodyBuffers.Put(buf)
		}
	}()
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(body, maxBodyBytes)); err != nil {
		return err
	}
	// The strings that Unmarshal stores are copies, so the buffer may be
	// reused once it returns.
	return json.Unmarshal(buf.Bytes(), v)
}

// listStream replays events that were read in full.
type listStream struct{ events []upstream.Event }

func (s *listStream) Next() (upstream.Event, error) {
	if len(s.events) == 0 {
		return upstream.Event{}, io.EOF
	}
	ev := s.events[0]
	s.events = s.events[1:]
	return ev, nil
}

func (s *listStream) Close() error { return nil }

// maxLineBytes bounds one server-sent event line.
const maxLineBytes = 4 << 20

// sseStream reads server-sent events of chat completion chunks.
type sseStream struct {
	ctx  context.Context
	body io.ReadCloser
	rd   *bufio.Reader

	started bool
	id      string
	finish  string
	usage   *upstream.Usage
	queue   []upstream.Event
	ended   bool

	closeOnce sync.Once
}

func newSSEStream(ctx context.Context, body io.ReadCloser) *sseStream {
	// A chunk line is a few hundred bytes, and an idle stream keeps this
	// buffer, so it is small. readLine joins longer lines.
	return &sseStream{ctx: ctx, body: body, rd: bufio.NewReaderSize(body, 1<<10)}
}

// Next returns the next event. The stream ends with EventDone after the
// [DONE] line. A stream that stops without [DONE] and without a finish
// reason is broken.
func (s *sseStream) Next() (upstream.Event, error) {
	for len(s.queue) == 0 {
		if s.ended {
			return upstream.Event{}, io.EOF
		}
		if err := s.readEvent(); err != nil {
			return upstream.Event{}, err
		}
	}
	ev := s.queue[0]
	s.queue = s.queue[1:]
	return ev, nil
}

// Ready reports whether Next can return without reading from the network:
// an event is queued, or the read buffer holds a whole data line (readEvent
// reads the lines before it from the buffer too).
func (s *sseStream) Ready() bool {
	if len(s.queue) > 0 || s.ended {
		return true
	}
	buf, _ := s.rd.Peek(s.rd.Buffered())
	for {
		end := bytes.IndexByte(buf, '\n')
		if end < 0 {
			return false
		}
		if bytes.HasPrefix(buf, []byte("data:")) {
			return true
		}
		buf = buf[end+1:]
	}
}

// readEvent reads lines until one data line was handled.
func (s *sseStream) readEvent() error {
	for {
		line, err := s.readLine()
		if errors.Is(err, io.EOF) && s.finish != "" {
			s.end()
			return nil
		}
		if err != nil {
			return s.broken(err)
		}
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue // comments, event names, ids and blank separators
		}
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, []byte("[DONE]")) {
			s.end()
			return nil
		}
		return s.handle(data)
	}
}

func (s *sseStream) readLine() ([]byte, error) {
	var line []byte
	for {
		part, isPrefix, err := s.rd.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, part...)
		if len(line) > maxLineBytes {
			return nil, errors.New("event line too long")
		}
		if !isPrefix {
			return line, nil
		}
	}
}

// handle queues the events of one chunk.
func (s *sseStream) handle(data []byte) error {
	var c wireChunk
	if err := json.Unmarshal(data, &c); err != nil {
		return s.broken(errors.New("malformed stream chunk"))
	}
	if len(c.Error) > 0 && string(c.Error) != "null" {
		return &upstream.Error{Outcome: upstream.OutcomeBrokenStream, Status: 200,
			Message: errorMessage(data, 200, scrubber{})}
	}
	if !s.started {
		s.started = true
		s.id = c.ID
		s.queue = append(s.queue, upstream.Event{Kind: upstream.EventStart, ResponseID: c.ID, Model: c.Model})
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue // the gateway requests one choice
		}
		s.queue = append(s.queue, ch.events(ch.Delta)...)
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			s.finish = *ch.FinishReason
		}
	}
	if u := c.Usage.usage(); u != nil {
		s.usage = u
	}
	return nil
}

func (s *sseStream) end() {
	s.ended = true
	s.queue = append(s.queue, upstream.Event{Kind: upstream.EventDone, ResponseID: s.id, FinishReason: s.finish, Usage: s.usage})
	s.Close()
}

// broken classifies a read failure: the client going away is canceled,
// anything else breaks the stream.
func (s *sseStream) broken(err error) error {
	s.Close()
	if errors.Is(s.ctx.Err(), context.Canceled) {
		return &upstream.Error{Outcome: upstream.OutcomeCanceled, Message: "client went away", Err: s.ctx.Err()}
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &upstream.Error{Outcome: upstream.OutcomeBrokenStream, Status: 200, Message: "the response stream ended early", Err: err}
}

// Close releases the connection. It may be called more than once.
func (s *sseStream) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.body.Close() })
	return err
}
