package grokweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// GatewaySession is one WebSocket connection to /ws/mgw/, for test
// assertions. It names the account by user id, never by cookie.
type GatewaySession struct {
	UID            string // uid query parameter of the upgrade
	Account        string // UserID of the account; empty when the upgrade was rejected
	Upgraded       bool   // the server switched protocols
	Model          string // session.create model
	ConversationID string
	Pings          int  // ping events received
	Completed      bool // response.done was sent
	// CloseStatus is the close code the client sent, or -1 when the
	// connection ended without a close frame (or is still open).
	CloseStatus int
	Ended       bool // the connection is gone
}

// SetRefuseUpgrade makes /ws/mgw/ answer upgrades with 404, as grok.com
// did before the gateway existed.
func (s *Server) SetRefuseUpgrade(refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.RefuseUpgrade = refuse
}

// SetRefuseRESTChat makes the REST chat routes answer 404, as grok.com
// may once chat lives only on the gateway.
func (s *Server) SetRefuseRESTChat(refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.RefuseRESTChat = refuse
}

// SetRequireSSORW switches the sso-rw check of Config.RequireSSORW.
func (s *Server) SetRequireSSORW(require bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.RequireSSORW = require
}

// GatewaySessions returns a copy of the gateway connections, oldest first.
func (s *Server) GatewaySessions() []GatewaySession {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]GatewaySession, len(s.gateway))
	for i, g := range s.gateway {
		out[i] = *g
	}
	return out
}

func (s *Server) option(get func(Config) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return get(s.cfg)
}

// updateGateway changes a recorded gateway session under the lock.
func (s *Server) updateGateway(g *GatewaySession, f func(*GatewaySession)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(g)
}

// handleGateway serves GET /ws/mgw/: the upgrade with its login, quota and
// fault checks, then the session, conversation and response events.
func (s *Server) handleGateway(w http.ResponseWriter, r *http.Request) {
	g := &GatewaySession{UID: r.URL.Query().Get("uid"), CloseStatus: -1}
	s.mu.Lock()
	s.gateway = append(s.gateway, g)
	s.mu.Unlock()
	s.log.Info("websocket upgrade", "path", r.URL.Path, "uid", g.UID)

	if s.option(func(c Config) bool { return c.RefuseUpgrade }) {
		writeError(w, http.StatusNotFound, codeNotFound, "Not found")
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		writeError(w, http.StatusUpgradeRequired, codeInvalidArgument, "expected a WebSocket upgrade")
		return
	}
	acct, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	// The connection counts as a chat once it sends an item, or here when
	// a fault refuses it, so a session created and closed without a
	// prompt is no chat.
	fault, faulted := s.takeFault(acct.SSO)
	if faulted && writeFault(w, fault) {
		s.countChat(acct.SSO)
		return
	}

	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	conn.SetReadLimit(maxBodyBytes)
	s.updateGateway(g, func(g *GatewaySession) { g.Account, g.Upgraded = acct.UserID, true })
	gc := &gatewayConn{s: s, conn: conn, acct: acct, fault: fault, rec: g}
	gc.serve(r.Context())
}

// gatewayConn is one upgraded connection.
type gatewayConn struct {
	s     *Server
	conn  *websocket.Conn
	acct  Account
	fault Fault
	rec   *GatewaySession

	sessionID string
}

// clientEvent is the part of a client event the emulator reads.
type clientEvent struct {
	Type    string `json:"type"`
	EventID string `json:"event_id"`
	Session struct {
		Model string `json:"model"`
		XGrok struct {
			ConversationID       string `json:"conversation_id"`
			IsTemporary          bool   `json:"is_temporary"`
			EnableImageGen       bool   `json:"enable_image_generation"`
			ImageGenerationCount int    `json:"image_generation_count"`
		} `json:"x_grok"`
	} `json:"session"`
	Item struct {
		XGrok struct {
			InputChunks []struct {
				Text *struct {
					Text string `json:"text"`
				} `json:"text"`
				Mention *struct {
					Target struct {
						FileMention struct {
							FileID string `json:"file_id"`
						} `json:"file_mention"`
					} `json:"target"`
				} `json:"mention"`
			} `json:"input_chunks"`
			FileAttachmentIDs []string `json:"file_attachment_ids"`
		} `json:"x_grok"`
	} `json:"item"`
	ParentResponseID string `json:"parent_response_id"`
}

// serve reads client events on a goroutine (counting pings, which may come
// at any time) and answers them in order here.
func (gc *gatewayConn) serve(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan clientEvent)
	go gc.readLoop(ctx, cancel, events)
	defer gc.conn.CloseNow()

	next := func(want string) (clientEvent, bool) {
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					return clientEvent{}, false
				}
				if ev.Type == want {
					return ev, true
				}
			case <-ctx.Done():
				return clientEvent{}, false
			}
		}
	}

	create, ok := next("session.create")
	if !ok {
		return
	}
	conversationID, ok := gc.attach(ctx, create)
	if !ok {
		return
	}
	item, ok := next("conversation.item.create")
	if !ok {
		return
	}
	gc.s.countChat(gc.acct.SSO)
	if _, ok := next("response.create"); !ok {
		return
	}
	gc.respond(ctx, create, item, conversationID)
	<-ctx.Done() // the client closes, or the server shuts down
}

// readLoop decodes client events until the connection ends, then records
// how it ended and cancels the connection's context.
func (gc *gatewayConn) readLoop(ctx context.Context, cancel context.CancelFunc, out chan<- clientEvent) {
	defer close(out)
	defer cancel()
	for {
		_, data, err := gc.conn.Read(ctx)
		if err != nil {
			status := int(websocket.CloseStatus(err))
			gc.s.updateGateway(gc.rec, func(g *GatewaySession) { g.CloseStatus, g.Ended = status, true })
			return
		}
		var msg struct {
			Event clientEvent `json:"event"`
		}
		if json.Unmarshal(data, &msg) != nil {
			continue
		}
		if msg.Event.Type == "ping" {
			gc.s.updateGateway(gc.rec, func(g *GatewaySession) { g.Pings++ })
			continue
		}
		select {
		case out <- msg.Event:
		case <-ctx.Done():
			return
		}
	}
}

// attach answers session.create: it checks the mode and, for a
// continuation, that the conversation belongs to this account, then sends
// session.created and conversation.attached.
func (gc *gatewayConn) attach(ctx context.Context, create clientEvent) (string, bool) {
	s := gc.s
	mode, err := resolveMode(create.Session.Model, "", "", false)
	if err != nil {
		gc.fail(ctx, codeInvalidArgument, err.Error(), 0)
		return "", false
	}
	gc.sessionID = uuid.NewString()
	convID := create.Session.XGrok.ConversationID
	if convID != "" && !s.ownsConversation(gc.acct.SSO, convID) {
		gc.fail(ctx, codeNotFound, "Conversation not found", 0)
		return "", false
	}
	if convID == "" {
		convID = s.createConversation(gc.acct.SSO, create.Session.XGrok.IsTemporary)
	}
	s.updateGateway(gc.rec, func(g *GatewaySession) { g.Model, g.ConversationID = mode, convID })

	gc.send(ctx, "session.created", map[string]any{"client_event_id": create.EventID})
	gc.send(ctx, "conversation.attached", map[string]any{"conversation": map[string]any{"id": convID}})
	return convID, true
}

// respond runs the chat checks of the REST side (mode and tier, parent,
// attachments, quota) and streams the answer.
func (gc *gatewayConn) respond(ctx context.Context, create, item clientEvent, convID string) {
	s := gc.s
	mode, _ := resolveMode(create.Session.Model, "", "", false)
	req := chatRequest{
		ModeID:                mode,
		Temporary:             create.Session.XGrok.IsTemporary,
		EnableImageGeneration: create.Session.XGrok.EnableImageGen,
		ImageGenerationCount:  create.Session.XGrok.ImageGenerationCount,
		ParentResponseID:      item.ParentResponseID,
		FileAttachments:       item.Item.XGrok.FileAttachmentIDs,
	}
	var texts []string
	for _, c := range item.Item.XGrok.InputChunks {
		if c.Text != nil {
			texts = append(texts, c.Text.Text)
		}
		if c.Mention != nil && c.Mention.Target.FileMention.FileID != "" && len(item.Item.XGrok.FileAttachmentIDs) == 0 {
			req.FileAttachments = append(req.FileAttachments, c.Mention.Target.FileMention.FileID)
		}
	}
	req.Message = strings.Join(texts, "\n")
	continuation := len(s.conversationTurns(convID)) > 0

	switch {
	case req.Message == "" && len(req.FileAttachments) == 0:
		gc.fail(ctx, codeInvalidArgument, "message must not be empty", 0)
		return
	case !modeAllowed(gc.acct.Tier, mode):
		gc.fail(ctx, codePermissionDenied, fmt.Sprintf("Access denied: mode %q is not available on your plan", mode), 0)
		return
	case continuation && !s.ownsTurn(gc.acct.SSO, convID, req.ParentResponseID):
		gc.fail(ctx, codeNotFound, "Conversation not found", 0)
		return
	}
	if id, ok := s.unknownFile(gc.acct.UserID, req.FileAttachments); !ok {
		gc.fail(ctx, codeInvalidArgument, fmt.Sprintf("unknown file attachment %q", id), 0)
		return
	}
	if ok, wait := s.spend(gc.acct.SSO, mode); !ok {
		gc.fail(ctx, codeResourceExhausted, "Too many requests", wait)
		return
	}
	ex := s.startExchange(gc.acct, req, mode, convID)
	gc.stream(ctx, ex)
}

// stream sends the answer of ex as gateway messages, applying the
// stream-level part of the fault as the REST side does.
func (gc *gatewayConn) stream(ctx context.Context, ex *exchange) {
	s := gc.s
	msgs := gc.messages(ex)
	delay := s.cfg.FirstByteDelay
	if gc.fault.Kind == FaultSlowFirstByte {
		delay += gc.fault.Delay
	}
	if !sleep(ctx, delay) {
		return
	}
	for i := 0; i <= len(msgs); i++ {
		if i == min(gc.fault.AfterFrames, len(msgs)) {
			switch gc.fault.Kind {
			case FaultCut:
				gc.conn.CloseNow()
				return
			case FaultErrorFrame:
				gc.fail(ctx, codeResourceExhausted, "Too many requests", 0)
				return
			}
		}
		if i == len(msgs) {
			break
		}
		if i > 0 && !sleep(ctx, s.cfg.TokenDelay) {
			return
		}
		gc.send(ctx, msgs[i].typ, msgs[i].event)
	}
	s.updateGateway(gc.rec, func(g *GatewaySession) { g.Completed = true })
}

type gatewayMessage struct {
	typ   string
	event map[string]any
}

// Chunk channels of the gateway. Text on the analysis channel is thinking.
const (
	channelAnswer   = "CHANNEL_ASSISTANT_RESPONSE"
	channelAnalysis = "CHANNEL_ANALYSIS"
)

// messages builds the answer: thinking chunks (expert and heavy), image
// cards at 50 and 100 percent, answer chunks, then response.done.
func (gc *gatewayConn) messages(ex *exchange) []gatewayMessage {
	var out []gatewayMessage
	text := func(t, channel string) {
		out = append(out, gatewayMessage{"response.chunk", map[string]any{
			"response_id": ex.modelTurn.ResponseID,
			"chunk":       map[string]any{"text": map[string]any{"text": t, "channel": channel}},
		}})
	}
	for _, t := range ex.thinking() {
		text(t["token"].(string), channelAnalysis)
	}
	for _, img := range ex.images {
		for _, p := range []int{50, 100} {
			out = append(out, gatewayMessage{"response.grok.output", map[string]any{
				"response_id": ex.modelTurn.ResponseID,
				"output":      map[string]any{"card_attachment": map[string]any{"json_data": img.cardJSON(p)}},
			}})
		}
	}
	for _, tok := range splitTokens(ex.answer, gc.s.chunks) {
		text(tok, channelAnswer)
	}
	out = append(out, gatewayMessage{"response.done", map[string]any{"response": map[string]any{
		"id":                 ex.modelTurn.ResponseID,
		"status":             "completed",
		"parent_response_id": ex.userTurn.ResponseID,
		"model":              backendModel(ex.mode),
	}}})
	return out
}

// fail sends an error event and closes the connection normally. retry,
// when set, is sent in whole seconds as retry_after_seconds.
func (gc *gatewayConn) fail(ctx context.Context, code int, message string, retry time.Duration) {
	e := map[string]any{"code": code, "message": message}
	if retry > 0 {
		e["retry_after_seconds"] = int((retry + time.Second - 1) / time.Second)
	}
	gc.send(ctx, "error", map[string]any{"error": e})
	gc.conn.Close(websocket.StatusNormalClosure, "")
}

// send writes one server message: type and session id at the top level,
// the payload under event.
func (gc *gatewayConn) send(ctx context.Context, typ string, payload map[string]any) {
	payload["type"] = typ
	msg := map[string]any{"type": typ, "session_id": gc.sessionID, "event": payload}
	data, err := json.Marshal(msg)
	if err != nil {
		panic(fmt.Sprintf("grokweb: encode gateway message: %v", err))
	}
	if err := gc.conn.Write(ctx, websocket.MessageText, data); err != nil && !errors.Is(err, context.Canceled) {
		gc.s.log.Debug("gateway write", "error", err)
	}
}

// createConversation stores an empty conversation owned by the account
// with this SSO and returns its id.
func (s *Server) createConversation(owner string, temporary bool) string {
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &conversation{id: uuid.NewString(), owner: owner, temporary: temporary, createTime: now}
	s.conversations[c.id] = c
	return c.id
}

// ownsConversation reports whether the conversation exists and belongs to
// the account with this SSO.
func (s *Server) ownsConversation(sso, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conversations[id]
	return ok && c.owner == sso
}

func (s *Server) conversationTurns(id string) []Turn {
	turns, _ := s.Conversation(id)
	return turns
}
