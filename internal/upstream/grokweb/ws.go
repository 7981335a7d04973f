package grokweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// wsPath is the chat gateway of the web app (since August 2026).
const wsPath = "/ws/mgw/"

// wsHandshakeTimeout bounds the wait for session.created and
// conversation.attached after the upgrade.
const wsHandshakeTimeout = 30 * time.Second

// errUpgradeRefused marks a gateway that responded to the upgrade with a
// plain HTTP response meaning "no WebSocket here" (200, 400, 404, 405,
// 410, 426 or 501). TransportAuto then uses REST.
var errUpgradeRefused = errors.New("websocket upgrade refused")

// wsTransport sends the chat over the WebSocket gateway.
type wsTransport struct{ c *Client }

// open upgrades, creates the gateway session (with the model, and the
// conversation to continue), sends the prompt and requests the response.
// The frames of the answer then come from the returned source.
func (t wsTransport) open(ctx context.Context, call chatCall) (frameSource, error) {
	c := t.c
	uid, err := c.gatewayUserID(ctx, call)
	if err != nil {
		return nil, err
	}
	conn, err := c.dialGateway(ctx, call, uid)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(maxLineBytes)

	src := &wsSource{conn: conn, ctx: ctx, sc: call.sc, stop: make(chan struct{})}
	if err := src.handshake(ctx, call.req); err != nil {
		conn.CloseNow()
		return nil, err
	}
	if err := src.send(ctx, itemCreate(src.sessionID, call.req, call.fileIDs)); err != nil {
		conn.CloseNow()
		return nil, classifyTransport(ctx, err, false, call.sc)
	}
	if err := src.send(ctx, event(wsResponseCreate, src.sessionID, nil)); err != nil {
		conn.CloseNow()
		return nil, classifyTransport(ctx, err, false, call.sc)
	}
	go src.heartbeat(c.heartbeat)
	return src, nil
}

// gatewayUserID returns the user UUID that the gateway URL and the
// x-userid cookie carry: from the credential, the cookie, or the account
// session endpoint.
func (c *Client) gatewayUserID(ctx context.Context, call chatCall) (string, error) {
	if call.cred.AccountID != "" {
		return call.cred.AccountID, nil
	}
	if id := call.cookie.UserID(); id != "" {
		return id, nil
	}
	return c.accountID(ctx, call.http, call.cookie, call.cred, call.sc)
}

// dialGateway sends the upgrade with the headers the web app sends: no
// statsig, the cookies plus x-userid.
func (c *Client) dialGateway(ctx context.Context, call chatCall, uid string) (*websocket.Conn, error) {
	u := *c.base
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	u.Path = wsPath
	u.RawQuery = url.Values{"uid": {uid}}.Encode()

	h := http.Header{}
	h.Set("Origin", c.base.String())
	h.Set("User-Agent", c.userAgent)
	h.Set("Accept-Language", "en-US,en;q=0.9")
	h.Set("Cache-Control", "no-cache")
	h.Set("Pragma", "no-cache")
	h.Set("Cookie", call.cookie.Header(uid))

	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPClient: call.ws,
		HTTPHeader: h,
	})
	if err == nil {
		return conn, nil
	}
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return nil, classifyTransport(ctx, err, false, call.sc)
	}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
		resp.Body.Close()
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed,
		http.StatusGone, http.StatusUpgradeRequired, http.StatusNotImplemented:
		if !isHTML(resp.Header.Get("Content-Type")) || resp.StatusCode != http.StatusOK {
			return nil, &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Status: resp.StatusCode,
				Message: "chat gateway refused the WebSocket upgrade", Err: errUpgradeRefused}
		}
	}
	return nil, classifyHTTP(resp, body, c.now(), call.sc)
}

// wsSource reads the answer's frames from the gateway connection.
type wsSource struct {
	conn      *websocket.Conn
	ctx       context.Context
	sc        scrubber
	sessionID string
	pending   []frame
	ended     bool // response.done, error or session.ended was read

	stop      chan struct{} // closed by close to end the heartbeat
	closeOnce sync.Once
}

// handshake sends session.create and waits for session.created and
// conversation.attached. An error event on the way is classified as a
// failure before the answer, so the caller may retry elsewhere.
func (s *wsSource) handshake(ctx context.Context, req upstream.ChatRequest) error {
	if err := s.send(ctx, sessionCreate(req)); err != nil {
		return classifyTransport(ctx, err, false, s.sc)
	}
	hctx, cancel := context.WithTimeout(ctx, wsHandshakeTimeout)
	defer cancel()
	created, attached := false, false
	for !created || !attached {
		m, err := s.read(hctx)
		if err != nil {
			if ctx.Err() == nil && hctx.Err() != nil {
				return &upstream.Error{Outcome: upstream.OutcomeUnavailable,
					Message: "chat gateway did not attach a conversation in time"}
			}
			return err
		}
		switch m.typ {
		case wsSessionCreated:
			created = true
			if m.sessionID != "" {
				s.sessionID = m.sessionID
			}
		case wsAttached:
			attached = true
			s.pending = append(s.pending, m.frames...)
		case wsError:
			return classifyStreamError(m.frames[0].Error, false, s.sc)
		case wsSessionEnded:
			return &upstream.Error{Outcome: upstream.OutcomeUnavailable, Status: http.StatusSwitchingProtocols,
				Message: "chat gateway ended the session before the answer"}
		}
	}
	return nil
}

// read returns the next gateway message. Errors are *upstream.Error.
func (s *wsSource) read(ctx context.Context) (wsMessage, error) {
	typ, data, err := s.conn.Read(ctx)
	if err != nil {
		return wsMessage{}, classifyTransport(ctx, err, false, s.sc)
	}
	if typ != websocket.MessageText {
		return wsMessage{}, nil
	}
	m, err := parseWSMessage(data)
	if err != nil {
		return wsMessage{}, &upstream.Error{Outcome: upstream.OutcomeUnavailable,
			Message: "malformed gateway message", Err: s.sc.wrap(err)}
	}
	return m, nil
}

func (s *wsSource) next() (frame, error) {
	for len(s.pending) == 0 {
		if s.ended {
			return frame{}, io.EOF
		}
		typ, data, err := s.conn.Read(s.ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.StatusNormalClosure {
				return frame{}, io.EOF
			}
			return frame{}, err
		}
		if typ != websocket.MessageText {
			continue
		}
		m, err := parseWSMessage(data)
		if err != nil {
			return frame{}, errors.Join(errMalformed, err)
		}
		switch m.typ {
		case wsResponseDone, wsError:
			s.ended = true
		case wsSessionEnded:
			s.ended = true
			return frame{}, io.EOF
		}
		s.pending = append(s.pending, m.frames...)
	}
	f := s.pending[0]
	s.pending = s.pending[1:]
	return f, nil
}

// close ends the heartbeat and closes the connection with the closing
// handshake: normal closure when the answer ended, going away when the
// caller gave up on it. The going-away handshake runs in the background,
// so a caller whose client left is not held up by the gateway.
func (s *wsSource) close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		if s.ended {
			err = s.conn.Close(websocket.StatusNormalClosure, "")
			return
		}
		go s.conn.Close(websocket.StatusGoingAway, "client went away")
	})
	return err
}

// heartbeat sends the ping event every period until close.
func (s *wsSource) heartbeat(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			id := "evt_hb_" + strconv.FormatInt(now.UnixMilli(), 10)
			ctx, cancel := context.WithTimeout(context.Background(), period)
			err := s.send(ctx, map[string]any{"event": map[string]any{"type": wsPing, "event_id": id}})
			cancel()
			if err != nil {
				return
			}
		}
	}
}

func (s *wsSource) send(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode gateway event: %w", err)
	}
	return s.conn.Write(ctx, websocket.MessageText, data)
}

// event wraps a client event: {"event":{"type":…,"event_id":…}} with the
// gateway session id at the top level once known.
func event(typ, sessionID string, fields map[string]any) map[string]any {
	ev := map[string]any{"type": typ, "event_id": "evt_" + uuid.NewString()}
	for k, v := range fields {
		ev[k] = v
	}
	msg := map[string]any{"event": ev}
	if sessionID != "" {
		msg["session_id"] = sessionID
	}
	return msg
}

// sessionCreate is the first event: the mode, the capabilities the web
// app announces, and either a private new chat or the conversation to
// continue.
func sessionCreate(req upstream.ChatRequest) map[string]any {
	xg := map[string]any{
		"protocol_capabilities":   []string{"conversation_attached", "custom_methods_v1"},
		"use_chunk":               true,
		"enable_side_by_side":     true,
		"enable_image_generation": true,
		"image_generation_count":  2,
		"disable_artifact":        true,
	}
	if req.ConversationID == "" {
		xg["keep_context"] = false
		xg["is_temporary"] = true
		xg["disable_memory"] = true
	} else {
		xg["conversation_id"] = req.ConversationID
		xg["load_existing"] = true
		xg["needs_history"] = false
	}
	msg := map[string]any{"event": map[string]any{
		"type":     wsSessionCreate,
		"event_id": "evt_init_" + uuid.NewString(),
		"session":  map[string]any{"model": req.Model, "x_grok": xg},
	}}
	if req.ConversationID != "" {
		msg["session_id"] = uuid.NewString()
	}
	return msg
}

// itemCreate carries the prompt as one text chunk, each uploaded file as
// a mention chunk, and for a continuation the response it answers.
func itemCreate(sessionID string, req upstream.ChatRequest, fileIDs []string) map[string]any {
	chunks := []any{map[string]any{"text": map[string]any{"text": prompt(req)}}}
	for _, id := range fileIDs {
		chunks = append(chunks, map[string]any{"mention": map[string]any{
			"target": map[string]any{"file_mention": map[string]any{"file_id": id}},
		}})
	}
	xg := map[string]any{"client_message_id": uuid.NewString(), "input_chunks": chunks}
	if len(fileIDs) > 0 {
		xg["file_attachment_ids"] = fileIDs
	}
	fields := map[string]any{"item": map[string]any{"type": "message", "role": "user", "x_grok": xg}}
	if req.ConversationID != "" {
		fields["parent_response_id"] = req.ParentResponseID
	}
	return event(wsItemCreate, sessionID, fields)
}
