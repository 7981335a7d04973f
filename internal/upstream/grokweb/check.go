package grokweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Results of one part of a Check.
const (
	CheckOK      = "ok"
	CheckFailed  = "failed"
	CheckUnknown = "unknown"
)

// CheckResult is the result of one part of a Check: CheckOK, CheckFailed
// or CheckUnknown, with a line saying why.
type CheckResult struct {
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// CheckQuota is the quota of one mode as the rate-limits endpoint reports
// it.
type CheckQuota struct {
	Remaining     int `json:"remaining"`
	Total         int `json:"total"`
	WindowSeconds int `json:"window_seconds"`
}

// Report is the result of Check for one session. It never contains the
// cookie.
type Report struct {
	// Login is true when the account session endpoint accepted the cookie.
	Login     bool   `json:"login"`
	AccountID string `json:"account_id,omitempty"`
	// Tier is basic, super or heavy; empty when neither the quota totals
	// nor the subscription tell.
	Tier string `json:"tier,omitempty"`
	// Quota is by mode id. A mode the account may not use has a zero
	// total or is missing.
	Quota map[string]CheckQuota `json:"quota"`
	// Transport and Selector are the configured chat transport and model
	// selector style, the ones Usable is judged by.
	Transport string `json:"transport"`
	Selector  string `json:"selector"`
	// Transports is by chat transport: TransportREST and TransportWS.
	Transports map[string]CheckResult `json:"transports"`
	// Selectors is by selector style: whether the rate-limits endpoint
	// accepts a body written in that style.
	Selectors map[string]CheckResult `json:"selectors"`
	// Usable is true when the login works, quota is left in some mode and
	// the configured transport and selector are not known to fail.
	Usable   bool     `json:"usable"`
	Problems []string `json:"problems"`
}

// checkMode is the mode the transport and selector checks name: every
// tier may use it.
const checkMode = "fast"

// checkTimeout bounds each part of a Check that has no deadline of its
// own.
const checkTimeout = 20 * time.Second

// Check reports which chat transports and selector styles work for the
// session, its tier and its quota per mode, without spending chat quota:
//
//   - login and account id: the account session endpoint;
//   - quota and tier: the rate-limits endpoint per mode, and the
//     subscriptions endpoint when the totals do not tell the tier;
//   - selectors: the rate-limits endpoint with a body in each style;
//   - REST chat: the new-conversation route with an empty message, which
//     the web app rejects as invalid before any response starts. A 400
//     shows the route is there, a 404 that it is gone;
//   - WebSocket chat: the upgrade and session.create up to
//     conversation.attached, then a normal close without sending an item
//     or a response.create.
//
// The error is non-nil only when ctx ends; every upstream failure is a
// part of the report.
func (c *Client) Check(ctx context.Context, cred upstream.Credential) (Report, error) {
	r := Report{
		Transport:  c.mode,
		Selector:   c.selector,
		Quota:      map[string]CheckQuota{},
		Transports: map[string]CheckResult{},
		Selectors:  map[string]CheckResult{},
		Problems:   []string{},
	}
	ck, sc, err := session(cred)
	if err != nil {
		r.problem("the credential has no sso cookie")
		return r, nil
	}
	e, err := c.route(cred)
	if err != nil {
		r.problem("outbound route: " + sc.scrub(err.Error()))
		return r, nil
	}

	id, err := c.accountID(ctx, e.rest, ck, cred, sc)
	if err != nil {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		r.problem("login check: " + describe(err))
		return r, nil
	}
	r.Login, r.AccountID = true, id
	if id != "" {
		cred.AccountID = id
	}

	c.checkQuota(ctx, e.rest, ck, cred, sc, &r)
	c.checkSelectors(ctx, e.rest, ck, cred, sc, &r)
	r.Transports[TransportREST] = c.checkREST(ctx, e.rest, ck, cred, sc)
	r.Transports[TransportWS] = c.checkWS(ctx, chatCall{http: e.rest, ws: e.ws, cookie: ck, cred: cred, sc: sc})
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.judge()
	return r, nil
}

func (r *Report) problem(p string) { r.Problems = append(r.Problems, p) }

// judge sets Usable from the parts and lists the problems that block use.
func (r *Report) judge() {
	usable := r.Login
	left := false
	for _, q := range r.Quota {
		if q.Remaining > 0 {
			left = true
		}
	}
	if !left {
		usable = false
		r.problem("no quota left in any mode")
	}
	rest, ws := r.Transports[TransportREST].Status, r.Transports[TransportWS].Status
	switch r.Transport {
	case TransportWS:
		if ws != CheckOK {
			usable = false
			r.problem("the configured transport ws does not work for this session")
		}
	case TransportAuto:
		if ws != CheckOK && rest == CheckFailed {
			usable = false
			r.problem("neither chat transport works for this session")
		}
	default:
		if rest == CheckFailed {
			usable = false
			r.problem("the configured transport rest does not work for this session")
		}
	}
	if r.Selectors[r.Selector].Status == CheckFailed {
		usable = false
		r.problem("the configured selector " + r.Selector + " is refused")
	}
	r.Usable = usable
}

// checkQuota reads every mode's quota and the tier.
func (c *Client) checkQuota(ctx context.Context, hc *http.Client, ck Cookie, cred upstream.Credential, sc scrubber, r *Report) {
	quota := map[string]upstream.ProbeQuota{}
	for _, mode := range ProbeModes {
		q, err := c.rateLimits(ctx, hc, ck, cred, sc, mode)
		if upstream.OutcomeOf(err) == upstream.OutcomeRejectedRequest {
			continue
		}
		if err != nil {
			r.problem(fmt.Sprintf("quota of %s: %s", mode, describe(err)))
			continue
		}
		quota[mode] = q
		r.Quota[mode] = CheckQuota{Remaining: q.Remaining, Total: q.Total, WindowSeconds: int(q.Window / time.Second)}
	}
	r.Tier = inferTier(quota)
	if r.Tier == "" {
		r.Tier = c.subscriptionTier(ctx, hc, ck, cred, sc)
	}
}

// subscriptionTiers maps the tier strings of the subscriptions endpoint
// to Probe's tiers (as of August 2026).
var subscriptionTiers = map[string]string{
	"SUBSCRIPTION_TIER_GROK_PRO":       TierSuper,
	"SUBSCRIPTION_TIER_SUPER_GROK":     TierSuper,
	"SUBSCRIPTION_TIER_SUPER_GROK_PRO": TierHeavy,
	"SUBSCRIPTION_TIER_GROK_PRO_HEAVY": TierHeavy,
}

// subscriptionTier reads the tier from the active subscriptions: the
// highest one, basic when there is none, "" when the call fails.
func (c *Client) subscriptionTier(ctx context.Context, hc *http.Client, ck Cookie, cred upstream.Credential, sc scrubber) string {
	var out struct {
		Subscriptions []struct {
			Tier   string `json:"tier"`
			Status string `json:"status"`
		} `json:"subscriptions"`
	}
	if err := c.callJSON(ctx, hc, ck, cred, sc, http.MethodGet, "/rest/subscriptions", nil, &out); err != nil {
		return ""
	}
	tier := TierBasic
	for _, s := range out.Subscriptions {
		if s.Status != "" && s.Status != "SUBSCRIPTION_STATUS_ACTIVE" {
			continue
		}
		if t := subscriptionTiers[s.Tier]; t == TierHeavy || t == TierSuper && tier == TierBasic {
			tier = t
		}
	}
	return tier
}

// selectorBodies are rate-limits bodies for checkMode in each selector
// style, as clients of each period sent them.
var selectorBodies = map[string]map[string]string{
	SelectorModeID:    {"modelName": checkMode},
	SelectorModelMode: {"modelName": legacyModels[checkMode][0], "modelMode": legacyModels[checkMode][1]},
	SelectorModelName: {"requestKind": "DEFAULT", "modelName": legacyModels[checkMode][0]},
}

// checkSelectors sends one rate-limits request per selector style.
func (c *Client) checkSelectors(ctx context.Context, hc *http.Client, ck Cookie, cred upstream.Credential, sc scrubber, r *Report) {
	for style, fields := range selectorBodies {
		body, _ := json.Marshal(fields)
		var out struct {
			RemainingQueries *int `json:"remainingQueries"`
			TotalQueries     *int `json:"totalQueries"`
		}
		err := c.postJSON(ctx, hc, ck, cred, sc, "/rest/rate-limits", body, &out)
		switch {
		case err == nil && out.TotalQueries != nil:
			r.Selectors[style] = CheckResult{Status: CheckOK, Detail: "the rate-limits endpoint accepts this style"}
		case err == nil:
			r.Selectors[style] = CheckResult{Status: CheckUnknown, Detail: "the rate-limits answer has no totals"}
		case upstream.OutcomeOf(err) == upstream.OutcomeRejectedRequest:
			r.Selectors[style] = CheckResult{Status: CheckFailed, Detail: describe(err)}
		default:
			r.Selectors[style] = CheckResult{Status: CheckUnknown, Detail: describe(err)}
		}
	}
}

// checkREST posts a chat with an empty message. A 400 means the REST chat
// route is there, a 404 that it is not.
// NOTE: no public source states that grok.com rejects an empty message
// before it spends quota. The web app never sends one, and the emulator
// rejects it with 400 and counts no chat.
func (c *Client) checkREST(ctx context.Context, hc *http.Client, ck Cookie, cred upstream.Credential, sc scrubber) CheckResult {
	req := upstream.ChatRequest{Model: checkMode}
	b := c.newChatBody(req, nil)
	b.Message = ""
	body, err := json.Marshal(b)
	if err != nil {
		return CheckResult{Status: CheckUnknown, Detail: "encode chat body: " + err.Error()}
	}

	path := chatPath(req)
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(path), strings.NewReader(string(body)))
	if err != nil {
		return CheckResult{Status: CheckUnknown, Detail: "build chat request: " + err.Error()}
	}
	c.setAPIHeaders(hreq.Header, ck, cred, http.MethodPost, path)
	resp, err := hc.Do(hreq)
	if err != nil {
		return CheckResult{Status: CheckUnknown, Detail: describe(classifyTransport(ctx, err, false, sc))}
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusBadRequest:
		return CheckResult{Status: CheckOK, Detail: "the chat route answers (it rejected the empty message)"}
	case resp.StatusCode == http.StatusNotFound:
		return CheckResult{Status: CheckFailed, Detail: "the chat route is not found (404)"}
	case resp.StatusCode == http.StatusOK && !isHTML(resp.Header.Get("Content-Type")):
		return CheckResult{Status: CheckOK, Detail: "the chat route accepted an empty message; a response may have started"}
	}

	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	e := classifyHTTP(resp, raw, c.now(), sc)
	switch e.Outcome {
	case upstream.OutcomeUnauthorized, upstream.OutcomeBlocked, upstream.OutcomeEgressRejected:
		return CheckResult{Status: CheckFailed, Detail: describe(e)}
	}
	return CheckResult{Status: CheckUnknown, Detail: describe(e)}
}

// checkWS upgrades to the chat gateway and creates a session up to
// conversation.attached, then closes normally. It sends no item and no
// response.create, so no response starts.
func (c *Client) checkWS(ctx context.Context, call chatCall) CheckResult {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	uid, err := c.gatewayUserID(ctx, call)
	if err != nil {
		return CheckResult{Status: CheckUnknown, Detail: describe(err)}
	}
	conn, err := c.dialGateway(ctx, call, uid)
	if err != nil {
		if errors.Is(err, errUpgradeRefused) {
			return CheckResult{Status: CheckFailed, Detail: describe(err)}
		}
		switch upstream.OutcomeOf(err) {
		case upstream.OutcomeUnauthorized, upstream.OutcomeBlocked, upstream.OutcomeEgressRejected:
			return CheckResult{Status: CheckFailed, Detail: describe(err)}
		}
		return CheckResult{Status: CheckUnknown, Detail: describe(err)}
	}
	conn.SetReadLimit(maxLineBytes)
	src := &wsSource{conn: conn, ctx: ctx, sc: call.sc, stop: make(chan struct{})}
	if err := src.handshake(ctx, upstream.ChatRequest{Model: checkMode}); err != nil {
		conn.CloseNow()
		return CheckResult{Status: CheckFailed, Detail: "gateway session: " + describe(err)}
	}
	conn.Close(websocket.StatusNormalClosure, "")
	return CheckResult{Status: CheckOK, Detail: "upgrade and session creation succeeded"}
}

// describe turns an upstream error into one line for the report. The
// errors are already scrubbed of the session's secrets.
func describe(err error) string {
	var ue *upstream.Error
	if errors.As(err, &ue) {
		msg := string(ue.Outcome)
		if ue.Status != 0 {
			msg += fmt.Sprintf(" (status %d)", ue.Status)
		}
		if ue.Message != "" {
			msg += ": " + ue.Message
		}
		return msg
	}
	return err.Error()
}
