package grokweb

import (
	"net/http"
)

// handleSoftDelete serves DELETE /rest/app-chat/conversations/soft/{id}:
// the owner's conversation leaves the account, and later follow-ups to it
// get 404. Another account's conversation gets 404 too, as if it did not
// exist.
func (s *Server) handleSoftDelete(w http.ResponseWriter, r *http.Request) {
	acct, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	c, found := s.conversations[id]
	if found && c.owner == acct.SSO {
		delete(s.conversations, id)
	}
	s.mu.Unlock()
	if !found || c.owner != acct.SSO {
		writeError(w, http.StatusNotFound, codeNotFound, "Conversation not found")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("{}"))
}
