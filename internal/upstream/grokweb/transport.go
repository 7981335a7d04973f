package grokweb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// chatTransport sends a chat and returns its answer as frames. REST posts
// the chat and reads NDJSON. The WebSocket gateway turns its response
// chunks into the same frames, so the stream above does not depend on the
// transport.
type chatTransport interface {
	// open starts the chat. An error is an *upstream.Error and means no
	// frame was read.
	open(ctx context.Context, call chatCall) (frameSource, error)
}

var (
	_ chatTransport = restTransport{}
	_ chatTransport = wsTransport{}
)

// openChat starts a chat on the configured transport. With TransportAuto
// it tries the WebSocket gateway, and when the upgrade is refused it
// sends this chat over REST and keeps the session on REST for the
// fallback period.
func (c *Client) openChat(ctx context.Context, call chatCall) (frameSource, error) {
	switch c.mode {
	case TransportREST:
		return restTransport{c: c}.open(ctx, call)
	case TransportWS:
		return wsTransport{c: c}.open(ctx, call)
	}
	key := call.cred.SessionID
	if c.onREST(key) {
		return restTransport{c: c}.open(ctx, call)
	}
	src, err := wsTransport{c: c}.open(ctx, call)
	if errors.Is(err, errUpgradeRefused) {
		c.keepOnREST(key)
		return restTransport{c: c}.open(ctx, call)
	}
	return src, err
}

// onREST reports whether the session's WebSocket upgrade was refused
// within the fallback period.
func (c *Client) onREST(sessionID string) bool {
	if sessionID == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.restOnly[sessionID]
	if ok && !c.now().Before(until) {
		delete(c.restOnly, sessionID)
		return false
	}
	return ok
}

func (c *Client) keepOnREST(sessionID string) {
	if sessionID == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.restOnly[sessionID] = c.now().Add(c.fallback)
}

// ChatTransport reports the transport that the next chat of a session
// would try first: TransportREST or TransportWS.
func (c *Client) ChatTransport(sessionID string) string {
	if c.mode == TransportREST || c.mode == TransportAuto && c.onREST(sessionID) {
		return TransportREST
	}
	return TransportWS
}

// chatCall is everything a transport needs for one chat.
type chatCall struct {
	http    *http.Client // REST calls
	ws      *http.Client // the WebSocket upgrade
	cookie  Cookie
	cred    upstream.Credential
	req     upstream.ChatRequest
	fileIDs []string
	sc      scrubber
}

// frameSource yields the frames of one answer. next returns io.EOF when
// the answer ends. Other errors are returned raw and the stream classifies
// them. close may be called at any time and more than once.
type frameSource interface {
	next() (frame, error)
	close() error
}

// errMalformed marks a stream line that is not valid JSON.
var errMalformed = errors.New("malformed stream line")

// restTransport posts the chat to the REST endpoints and reads the
// NDJSON response.
type restTransport struct{ c *Client }

func (t restTransport) open(ctx context.Context, call chatCall) (frameSource, error) {
	c := t.c
	body, err := json.Marshal(c.newChatBody(call.req, call.fileIDs))
	if err != nil {
		return nil, &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Message: "encode chat body", Err: err}
	}
	path := chatPath(call.req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(path), bytes.NewReader(body))
	if err != nil {
		return nil, &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Message: "build chat request", Err: err}
	}
	c.setAPIHeaders(hreq.Header, call.cookie, call.cred, http.MethodPost, path)

	resp, err := call.http.Do(hreq)
	if err != nil {
		return nil, classifyTransport(ctx, err, false, call.sc)
	}
	if err := checkResponse(resp, c.now(), call.sc); err != nil {
		resp.Body.Close()
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4<<10), maxLineBytes) // grows up to maxLineBytes for long frames
	return &ndjsonSource{body: resp.Body, lines: sc}, nil
}

// ndjsonSource reads frames from a newline-delimited JSON body, one line
// at a time, so each frame is handed on as soon as its line arrives.
type ndjsonSource struct {
	body    io.ReadCloser
	lines   *bufio.Scanner
	pending []frame // frames of the current line not yet returned
	err     error   // decode error to return once pending is empty
}

func (s *ndjsonSource) next() (frame, error) {
	for len(s.pending) == 0 {
		if s.err != nil {
			return frame{}, s.err
		}
		if !s.lines.Scan() {
			if err := s.lines.Err(); err != nil {
				return frame{}, err
			}
			return frame{}, io.EOF
		}
		frames, err := parseFrames(s.lines.Bytes())
		s.pending = frames
		if err != nil {
			s.err = errors.Join(errMalformed, err)
		}
	}
	f := s.pending[0]
	s.pending = s.pending[1:]
	return f, nil
}

func (s *ndjsonSource) close() error { return s.body.Close() }
