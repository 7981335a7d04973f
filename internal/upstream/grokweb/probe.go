package grokweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// ProbeModes are the modes whose quota Probe reads, one rate-limits call
// each.
var ProbeModes = []string{"auto", "fast", "expert", "heavy", "grok-420-computer-use-sa"}

// Account tiers that Probe reports.
const (
	TierBasic = "basic"
	TierSuper = "super"
	TierHeavy = "heavy"
)

// Probe checks the login through the account session endpoint and reads
// the quota of every mode in ProbeModes through the rate-limits endpoint.
// Neither spends chat quota. A dead login is an *upstream.Error with
// OutcomeUnauthorized, a blocked account one with OutcomeBlocked. A mode
// the account may not use is left out of Quota.
func (c *Client) Probe(ctx context.Context, cred upstream.Credential) (upstream.Probe, error) {
	ck, sc, err := session(cred)
	if err != nil {
		return upstream.Probe{}, err
	}
	hc, err := c.httpClient(cred)
	if err != nil {
		return upstream.Probe{}, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Message: sc.scrub(err.Error())}
	}

	accountID, err := c.accountID(ctx, hc, ck, cred, sc)
	if err != nil {
		return upstream.Probe{}, err
	}
	cred.AccountID = accountID

	p := upstream.Probe{AccountID: accountID, Quota: make(map[string]upstream.ProbeQuota)}
	for _, mode := range ProbeModes {
		q, err := c.rateLimits(ctx, hc, ck, cred, sc, mode)
		if upstream.OutcomeOf(err) == upstream.OutcomeRejectedRequest {
			continue
		}
		if err != nil {
			return upstream.Probe{}, err
		}
		p.Quota[mode] = q
	}
	p.Tier = inferTier(p.Quota)
	return p, nil
}

// accountID reads the user id from the account session endpoint, which
// reports a dead cookie as "unauthenticated" and a blocked account as
// "blocked" with a 200 status.
func (c *Client) accountID(ctx context.Context, hc *http.Client, ck Cookie, cred upstream.Credential, sc scrubber) (string, error) {
	var out struct {
		Status  string `json:"status"`
		Session struct {
			UserID string `json:"userId"`
		} `json:"session"`
		User struct {
			UserID string `json:"userId"`
			ID     string `json:"id"`
		} `json:"user"`
	}
	if err := c.callJSON(ctx, hc, ck, cred, sc, http.MethodGet, "/api/auth/session", nil, &out); err != nil {
		return "", err
	}
	switch out.Status {
	case "unauthenticated":
		return "", &upstream.Error{Outcome: upstream.OutcomeUnauthorized, Status: http.StatusOK,
			Message: "account session is unauthenticated"}
	case "blocked":
		return "", &upstream.Error{Outcome: upstream.OutcomeBlocked, Status: http.StatusOK,
			Message: "account is blocked"}
	}
	for _, id := range []string{out.Session.UserID, out.User.UserID, out.User.ID, ck.UserID()} {
		if id != "" {
			return id, nil
		}
	}
	return "", nil
}

func (c *Client) rateLimits(ctx context.Context, hc *http.Client, ck Cookie, cred upstream.Credential, sc scrubber, mode string) (upstream.ProbeQuota, error) {
	body, _ := json.Marshal(map[string]string{"modelName": mode})
	var out struct {
		WindowSizeSeconds int `json:"windowSizeSeconds"`
		RemainingQueries  int `json:"remainingQueries"`
		TotalQueries      int `json:"totalQueries"`
	}
	if err := c.postJSON(ctx, hc, ck, cred, sc, "/rest/rate-limits", body, &out); err != nil {
		return upstream.ProbeQuota{}, err
	}
	return upstream.ProbeQuota{
		Remaining: out.RemainingQueries,
		Total:     out.TotalQueries,
		Window:    time.Duration(out.WindowSizeSeconds) * time.Second,
	}, nil
}

// inferTier reads the account tier from quota totals, the signal that
// other clients of this protocol rely on (as of August 2026). Totals of
// auto 7 or 20 and fast 30 mean basic. Auto 50 and fast 140 mean super.
// Auto 150, fast 400 and any heavy-mode quota mean heavy. When signals
// disagree the lowest tier wins. It returns "" when no total is known.
func inferTier(quota map[string]upstream.ProbeQuota) string {
	rank := map[string]int{TierBasic: 1, TierSuper: 2, TierHeavy: 3}
	signals := map[string]map[int]string{
		"auto": {7: TierBasic, 20: TierBasic, 50: TierSuper, 150: TierHeavy},
		"fast": {30: TierBasic, 140: TierSuper, 400: TierHeavy},
	}
	tier := ""
	consider := func(t string) {
		if t != "" && (tier == "" || rank[t] < rank[tier]) {
			tier = t
		}
	}
	for mode, totals := range signals {
		if q, ok := quota[mode]; ok {
			consider(totals[q.Total])
		}
	}
	if q, ok := quota["heavy"]; ok && q.Total > 0 {
		consider(TierHeavy)
	}
	return tier
}

// FetchAsset downloads a generated image or uploaded file with the
// session's cookie, because asset URLs are not public. path is relative
// to the asset origin ("users/…/image.jpg") or an absolute URL on the
// asset or web app origin. Any other host is rejected, so a caller cannot
// send the cookie elsewhere. The caller closes the returned body.
func (c *Client) FetchAsset(ctx context.Context, cred upstream.Credential, path string) (io.ReadCloser, string, error) {
	ck, sc, err := session(cred)
	if err != nil {
		return nil, "", err
	}
	u, err := c.resolveAsset(path)
	if err != nil {
		return nil, "", &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Message: err.Error()}
	}
	hc, err := c.httpClient(cred)
	if err != nil {
		return nil, "", &upstream.Error{Outcome: upstream.OutcomeUnavailable, Message: sc.scrub(err.Error())}
	}

	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Message: "build asset request", Err: err}
	}
	c.setBrowserHeaders(hreq.Header, c.base.String()+"/")
	// Assets load like a page navigation, not like a fetch call.
	hreq.Header.Set("Accept", "image/avif,image/webp,image/apng,image/*,video/*,*/*;q=0.8")
	hreq.Header.Set("Sec-Fetch-Dest", "image")
	hreq.Header.Set("Sec-Fetch-Mode", "navigate")
	hreq.Header.Set("Sec-Fetch-Site", "none")
	hreq.Header.Set("Upgrade-Insecure-Requests", "1")
	hreq.Header.Del("Origin")
	hreq.Header.Set("Cookie", ck.Header(cred.AccountID))

	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, "", classifyTransport(ctx, err, false, sc)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
		return nil, "", classifyHTTP(resp, body, c.now(), sc)
	}
	return resp.Body, resp.Header.Get("Content-Type"), nil
}

var errAssetPath = errors.New("asset path is empty or leaves the asset origin")

// resolveAsset turns an asset path into an absolute URL on the asset
// origin, rejecting paths that climb out of it and other hosts.
func (c *Client) resolveAsset(p string) (string, error) {
	p = strings.TrimSpace(p)
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		u, err := url.Parse(p)
		if err != nil {
			return "", errAssetPath
		}
		if !sameOrigin(u, c.assets) && !sameOrigin(u, c.base) {
			return "", fmt.Errorf("asset host %q is not the Grok asset or web origin", u.Host)
		}
		return u.String(), nil
	}
	clean := path.Clean("/" + p)
	if clean == "/" || strings.Contains(p, "..") {
		return "", errAssetPath
	}
	return c.assets.String() + clean, nil
}

func sameOrigin(a, b *url.URL) bool {
	return a.Scheme == b.Scheme && strings.EqualFold(a.Host, b.Host)
}
