package grokweb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// chatRequest holds the body fields of a chat that the emulator acts on.
// Other fields of the documented body are accepted and ignored.
type chatRequest struct {
	Message               string   `json:"message"`
	ModeID                string   `json:"modeId"`
	ModelName             string   `json:"modelName"`
	ModelMode             string   `json:"modelMode"`
	IsReasoning           bool     `json:"isReasoning"`
	Temporary             bool     `json:"temporary"`
	FileAttachments       []string `json:"fileAttachments"`
	EnableImageGeneration bool     `json:"enableImageGeneration"`
	ImageGenerationCount  int      `json:"imageGenerationCount"`
	SendFinalMetadata     bool     `json:"sendFinalMetadata"`
	DisableTextFollowUps  bool     `json:"disableTextFollowUps"`
	ParentResponseID      string   `json:"parentResponseId"`
}

// Turn is one message of a stored conversation.
type Turn struct {
	ResponseID       string
	ParentResponseID string // empty for the first user turn
	Sender           string // "human" or "assistant"
	Message          string
	Mode             string // mode id the turn was sent in
	CreateTime       time.Time
}

// conversation is a stored thread. owner is the SSO of the account that
// created it, because follow-ups from other accounts get 404.
type conversation struct {
	id         string
	owner      string
	title      string
	temporary  bool
	createTime time.Time
	turns      []Turn
}

// Conversation returns a copy of the turns of the conversation with this
// id, oldest first, and whether it exists.
func (s *Server) Conversation(id string) ([]Turn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conversations[id]
	if !ok {
		return nil, false
	}
	return append([]Turn(nil), c.turns...), true
}

// handleNewConversation serves POST /rest/app-chat/conversations/new.
func (s *Server) handleNewConversation(w http.ResponseWriter, r *http.Request) {
	s.serveChat(w, r, "")
}

// handleFollowUp serves POST /rest/app-chat/conversations/{id}/responses.
func (s *Server) handleFollowUp(w http.ResponseWriter, r *http.Request) {
	s.serveChat(w, r, r.PathValue("id"))
}

// serveChat handles a chat request. conversationID is empty for a new conversation.
// The checks run in the order a test can rely on: login, injected fault,
// body, mode and tier, conversation, attachments, quota.
func (s *Server) serveChat(w http.ResponseWriter, r *http.Request, conversationID string) {
	if s.option(func(c Config) bool { return c.RefuseRESTChat }) {
		writeError(w, http.StatusNotFound, codeNotFound, "Not found")
		return
	}
	acct, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	// A body with neither message nor attachments is refused before it
	// counts as a chat or takes a fault: it starts no answer, and clients
	// send one to learn whether the route is there.
	if emptyChat(r) {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "message must not be empty")
		return
	}
	s.countChat(acct.SSO)

	fault, faulted := s.takeFault(acct.SSO)
	if faulted && writeFault(w, fault) {
		return
	}

	var req chatRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Message == "" && len(req.FileAttachments) == 0 {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "message must not be empty")
		return
	}
	mode, err := resolveMode(req.ModeID, req.ModelName, req.ModelMode, req.IsReasoning)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, err.Error())
		return
	}
	// NOTE: grok.com's body for a mode above the tier is not documented
	// beyond "403 with access-denied text"; code 7 is the gRPC code for it.
	if !modeAllowed(acct.Tier, mode) {
		writeError(w, http.StatusForbidden, codePermissionDenied,
			fmt.Sprintf("Access denied: mode %q is not available on your plan", mode))
		return
	}
	if conversationID != "" && req.ParentResponseID == "" {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "parentResponseId must not be empty")
		return
	}
	if conversationID != "" && !s.ownsTurn(acct.SSO, conversationID, req.ParentResponseID) {
		writeError(w, http.StatusNotFound, codeNotFound, "Conversation not found")
		return
	}
	if id, ok := s.unknownFile(acct.UserID, req.FileAttachments); !ok {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, fmt.Sprintf("unknown file attachment %q", id))
		return
	}
	if ok, wait := s.spend(acct.SSO, mode); !ok {
		writeTooManyRequests(w, wait)
		return
	}

	ex := s.startExchange(acct, req, mode, conversationID)
	s.stream(w, r, ex, fault)
}

// emptyChat reports whether r's body is a chat body with neither message
// nor attachments. It puts the body back for the handler.
func emptyChat(r *http.Request) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req chatRequest
	if err != nil || json.Unmarshal(body, &req) != nil {
		return false
	}
	return req.Message == "" && len(req.FileAttachments) == 0
}

func (s *Server) countChat(sso string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.accounts[sso]; ok {
		a.chats++
	}
}

// ownsTurn reports whether the conversation exists, belongs to the account
// with this SSO and contains the response parentID.
func (s *Server) ownsTurn(sso, conversationID, parentID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conversations[conversationID]
	if !ok || c.owner != sso {
		return false
	}
	for _, t := range c.turns {
		if t.ResponseID == parentID {
			return true
		}
	}
	return false
}

// exchange is one chat turn being answered: the stored ids and the text the
// stream will carry.
type exchange struct {
	account        Account
	req            chatRequest
	mode           string
	conversationID string
	followUp       bool
	flat           bool // stream follow-up frames without the response wrapper
	temporary      bool
	title          string
	createTime     time.Time
	userTurn       Turn
	modelTurn      Turn
	answer         string
	images         []generatedImage
}

// startExchange stores the user turn and the answer in the conversation,
// creating the conversation when conversationID is empty.
func (s *Server) startExchange(acct Account, req chatRequest, mode, conversationID string) *exchange {
	now := s.now().UTC()
	ex := &exchange{
		account:  acct,
		req:      req,
		mode:     mode,
		followUp: conversationID != "",
		flat:     s.cfg.FlatFollowUps,
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conversations[conversationID]
	if c == nil {
		c = &conversation{
			id:         uuid.NewString(),
			owner:      acct.SSO,
			title:      titleFor(req.Message),
			temporary:  req.Temporary,
			createTime: now,
		}
		s.conversations[c.id] = c
	}
	ex.conversationID, ex.title, ex.temporary, ex.createTime = c.id, c.title, c.temporary, c.createTime

	turnNumber := len(c.turns)/2 + 1
	ex.answer = composeAnswer(req.Message, mode, turnNumber, s.chunks)
	if wantsImages(req) {
		ex.images = s.generateImagesLocked(acct.UserID, imageCount(req))
	}
	ex.userTurn = Turn{
		ResponseID:       uuid.NewString(),
		ParentResponseID: req.ParentResponseID,
		Sender:           "human",
		Message:          req.Message,
		Mode:             mode,
		CreateTime:       now,
	}
	ex.modelTurn = Turn{
		ResponseID:       uuid.NewString(),
		ParentResponseID: ex.userTurn.ResponseID,
		Sender:           "assistant",
		Message:          ex.fullMessage(),
		Mode:             mode,
		CreateTime:       now,
	}
	c.turns = append(c.turns, ex.userTurn, ex.modelTurn)
	return ex
}
