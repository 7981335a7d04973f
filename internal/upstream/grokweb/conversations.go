package grokweb

import (
	"context"
	"net/url"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// DeleteConversation removes a conversation from the account that owns it,
// with the web app's soft delete (DELETE
// /rest/app-chat/conversations/soft/{id}). The conversation leaves the
// account's history; whatever grok.com keeps after a soft delete is
// outside the gateway's reach.
func (c *Client) DeleteConversation(ctx context.Context, cred upstream.Credential, conversationID string) error {
	if conversationID == "" {
		return &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Message: "empty conversation id"}
	}
	ck, sc, err := session(cred)
	if err != nil {
		return err
	}
	hc, err := c.httpClient(cred)
	if err != nil {
		return &upstream.Error{Outcome: upstream.OutcomeUnavailable, Message: sc.scrub(err.Error())}
	}
	path := "/rest/app-chat/conversations/soft/" + url.PathEscape(conversationID)
	return c.callJSON(ctx, hc, ck, cred, sc, "DELETE", path, nil, nil)
}
