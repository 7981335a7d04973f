package grokweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Chat sends req as a new conversation, or as a follow-up when
// req.ConversationID is set, and returns the answer as a stream of events.
// Chat reads the answer until its first event, so a failure up to that
// point (HTTP errors, and in-band errors such as a used-up quota) is
// returned here as an *upstream.Error and the caller may retry on another
// session. Failures after that come from the stream's Next.
func (c *Client) Chat(ctx context.Context, cred upstream.Credential, req upstream.ChatRequest) (upstream.Stream, error) {
	ck, sc, err := session(cred)
	if err != nil {
		return nil, err
	}
	if len(req.Messages) == 0 {
		return nil, &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Message: "chat has no messages"}
	}
	eg, err := c.route(cred)
	if err != nil {
		return nil, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Message: sc.scrub(err.Error())}
	}

	ctx, cancel := context.WithCancel(ctx)
	fileIDs, err := c.uploadImages(ctx, eg.rest, ck, cred, sc, req.Messages)
	if err != nil {
		cancel()
		return nil, err
	}
	call := chatCall{http: eg.rest, ws: eg.ws, cookie: ck, cred: cred, req: req, fileIDs: fileIDs, sc: sc}
	src, err := c.openChat(ctx, call)
	if err != nil {
		cancel()
		return nil, err
	}

	s := &stream{
		ctx: ctx, cancel: cancel, src: src, sc: sc, assets: c.assets,
		conversationID: req.ConversationID,
		images:         make(map[string]bool),
	}
	if err := s.fill(); err != nil {
		s.Close()
		return nil, err
	}
	s.started = true
	return s, nil
}

// stream turns frames into upstream events. It holds at most the events
// of one frame, plus the answer text so far to complete it from the final
// frame.
type stream struct {
	ctx    context.Context
	cancel context.CancelFunc
	src    frameSource
	sc     scrubber
	assets *url.URL
	closed atomic.Bool

	queue   []upstream.Event // events ready for Next
	err     error            // returned once queue is empty
	done    bool             // EventDone is queued; io.EOF follows
	started bool             // Chat has returned, so failures break the stream

	conversationID string
	parentID       string // the user turn's response id
	responseID     string // the answer's response id
	startSent      bool
	answering      bool // answer text began, so later thinking is dropped
	softStop       bool // the answer text is complete
	content        bool // a text, reasoning or image event was queued
	text           strings.Builder
	images         map[string]bool // image ids and paths already sent
	moderated      bool            // a final image was withheld by moderation
	citations      []card
}

var _ upstream.Stream = (*stream)(nil)

// Next returns the next event, io.EOF after EventDone, or an
// *upstream.Error.
func (s *stream) Next() (upstream.Event, error) {
	if s.closed.Load() {
		return upstream.Event{}, &upstream.Error{Outcome: upstream.OutcomeCanceled, Message: "stream closed"}
	}
	if err := s.fill(); err != nil {
		return upstream.Event{}, err
	}
	ev := s.queue[0]
	s.queue = s.queue[1:]
	return ev, nil
}

// fill reads frames until an event is queued or the stream ends.
func (s *stream) fill() error {
	for len(s.queue) == 0 {
		switch {
		case s.err != nil:
			return s.err
		case s.done:
			return io.EOF
		case s.closed.Load():
			return &upstream.Error{Outcome: upstream.OutcomeCanceled, Message: "stream closed"}
		}
		f, err := s.src.next()
		if err != nil {
			s.err = s.endError(err)
			continue
		}
		if err := s.handle(f); err != nil {
			s.err = err
		}
	}
	return nil
}

// Close stops the answer and releases the connection.
func (s *stream) Close() error {
	s.closed.Store(true)
	s.cancel()
	return s.src.close()
}

// endError decides how a stream that stopped delivering frames ended.
func (s *stream) endError(err error) error {
	if s.closed.Load() {
		return &upstream.Error{Outcome: upstream.OutcomeCanceled, Message: "stream closed"}
	}
	switch {
	case errors.Is(err, io.EOF) && s.softStop && s.content:
		// No final frame, but the answer text was marked complete.
		s.queueDone(nil)
		return nil
	case errors.Is(err, io.EOF):
		return &upstream.Error{Outcome: upstream.OutcomeBrokenStream, Status: 200,
			Message: "stream ended before the answer was complete"}
	case errors.Is(err, errMalformed):
		return &upstream.Error{Outcome: upstream.OutcomeBrokenStream, Status: 200,
			Message: "malformed stream frame", Err: s.sc.wrap(err)}
	}
	return classifyTransport(s.ctx, err, s.started, s.sc)
}

// handle maps one frame to events.
func (s *stream) handle(f frame) error {
	switch {
	case f.Error != nil:
		return classifyStreamError(f.Error, s.started, s.sc)
	case f.Conversation != nil:
		s.conversationID = f.Conversation.ConversationID
		return nil
	case f.Response != nil:
		return s.handleResponse(f.Response)
	}
	return nil // title frames carry nothing the client uses
}

func (s *stream) handleResponse(r *responseFrame) error {
	if r.Error != nil {
		return classifyStreamError(r.Error, s.started, s.sc)
	}
	if r.UserResponse != nil {
		s.parentID = r.UserResponse.ResponseID
		return nil
	}
	if r.ResponseID != "" && r.ResponseID != s.parentID {
		s.responseID = r.ResponseID
	}
	if r.ModelResponse != nil {
		return s.finish(r.ModelResponse)
	}
	if r.CardAttachment != nil {
		s.handleCard(r.CardAttachment)
	}
	if r.ImageGen != nil {
		s.handleImage(r.ImageGen)
	}
	if len(r.FinalMetadata) > 0 && !isNull(r.FinalMetadata) {
		s.softStop = true
	}
	if r.IsSoftStop {
		s.softStop = true
	}
	if r.Token != nil {
		s.handleToken(r)
	}
	return nil
}

func (s *stream) handleToken(r *responseFrame) {
	switch r.MessageTag {
	case "tool_usage_card", "raw_function_result":
		return // tool calls and their raw output are not answer text
	}
	if r.IsThinking {
		// The web app hides thinking that arrives after the answer began.
		if !s.answering && *r.Token != "" {
			s.emit(upstream.Event{Kind: upstream.EventReasoning, Text: *r.Token})
		}
		return
	}
	text := s.renderTags(*r.Token)
	if text == "" {
		return
	}
	s.answering = true
	s.text.WriteString(text)
	s.emit(upstream.Event{Kind: upstream.EventText, Text: text})
}

// handleCard records citation cards and sends generated images.
func (s *stream) handleCard(ca *cardAttachment) {
	var cd card
	if json.Unmarshal([]byte(ca.JSONData), &cd) != nil {
		return
	}
	if img := cd.image(); img != nil {
		s.handleImage(img)
		return
	}
	if cd.ID != "" && cd.URL != "" {
		s.citations = append(s.citations, cd)
	}
}

// handleImage sends a finished image once. Partial previews are skipped,
// and a moderated image is withheld for good.
func (s *stream) handleImage(g *imageGeneration) {
	if !g.final() {
		return
	}
	if g.Moderated {
		s.moderated = true
		return
	}
	s.emitImage(g.id(), g.url())
}

func (s *stream) emitImage(id, p string) {
	if p == "" || s.images[p] || (id != "" && s.images[id]) {
		return
	}
	s.images[p] = true
	if id != "" {
		s.images[id] = true
	}
	ref := &upstream.ImageRef{URL: s.assetURL(p), MediaType: mime.TypeByExtension(path.Ext(p))}
	s.emit(upstream.Event{Kind: upstream.EventImage, Image: ref})
}

// assetURL makes a relative asset path absolute on the asset origin.
func (s *stream) assetURL(p string) string {
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		return p
	}
	return s.assets.String() + "/" + strings.TrimLeft(p, "/")
}

// finish ends the answer at the modelResponse frame, which holds the
// whole answer: it sends text the stream did not carry and images known
// only from generatedImageUrls, then EventDone.
func (s *stream) finish(mr *responseObject) error {
	if len(mr.StreamErrors) > 0 {
		return classifyStreamError(&mr.StreamErrors[0], s.started, s.sc)
	}
	if mr.ResponseID != "" {
		s.responseID = mr.ResponseID
	}
	if s.parentID == "" {
		s.parentID = mr.ParentResponseID
	}

	full := s.renderTags(mr.Message)
	if streamed := s.text.String(); len(full) > len(streamed) && strings.HasPrefix(full, streamed) {
		rest := full[len(streamed):]
		s.text.WriteString(rest)
		s.emit(upstream.Event{Kind: upstream.EventText, Text: rest})
	}
	// A moderated image must not come back through the URL list.
	if !s.moderated {
		for _, u := range mr.GeneratedImageURLs {
			s.emitImage("", u)
		}
	}
	if !s.content {
		return &upstream.Error{Outcome: upstream.OutcomeBrokenStream, Status: 200, Message: "upstream sent an empty answer"}
	}

	model := mr.Model
	if mr.RequestMetadata != nil && mr.RequestMetadata.Model != "" {
		model = mr.RequestMetadata.Model
	}
	s.queueDone(&model)
	return nil
}

func (s *stream) queueDone(model *string) {
	ev := upstream.Event{Kind: upstream.EventDone, FinishReason: "stop",
		ConversationID: s.conversationID, ResponseID: s.responseID, ParentResponseID: s.parentID}
	if model != nil {
		ev.Model = *model
	}
	s.queue = append(s.queue, ev)
	s.done = true
}

// emit queues a content event, preceded by EventStart the first time.
func (s *stream) emit(ev upstream.Event) {
	if !s.startSent {
		s.startSent = true
		s.queue = append(s.queue, upstream.Event{Kind: upstream.EventStart,
			ConversationID: s.conversationID, ResponseID: s.responseID, ParentResponseID: s.parentID})
	}
	s.content = true
	s.queue = append(s.queue, ev)
}

// renderTag matches the web app's <grok:render> elements, which place
// cards (citations, generated images) inside the answer text.
var renderTag = regexp.MustCompile(`(?s)<grok:render\b([^>]*)>.*?</grok:render>`)

var cardIDAttr = regexp.MustCompile(`card_id="([^"]*)"`)

// renderTags replaces inline citations with a markdown link numbered by
// the order of their cards, and drops other render elements: generated
// images arrive as image events.
//
// NOTE: an element split across two tokens is not recognised and passes
// through as text.
func (s *stream) renderTags(text string) string {
	if !strings.Contains(text, "<grok:render") {
		return text
	}
	return renderTag.ReplaceAllStringFunc(text, func(el string) string {
		attrs := renderTag.FindStringSubmatch(el)[1]
		if !strings.Contains(attrs, `type="render_inline_citation"`) {
			return ""
		}
		m := cardIDAttr.FindStringSubmatch(attrs)
		if m == nil {
			return ""
		}
		for i, cd := range s.citations {
			if cd.ID == m[1] {
				return fmt.Sprintf(" [[%d]](%s)", i+1, cd.URL)
			}
		}
		return ""
	})
}
