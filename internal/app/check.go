package app

import (
	"context"
	"fmt"

	"github.com/grokproxy/grokproxy/internal/admin"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
	"github.com/grokproxy/grokproxy/internal/upstream/xai"
)

// GrokConfig is the Grok web client configuration of cfg.
func GrokConfig(cfg config.Config) grokweb.Config {
	return grokweb.Config{
		BaseURL:          cfg.GrokBaseURL,
		AssetsURL:        cfg.GrokAssetsURL,
		Transport:        cfg.GrokChatTransport,
		FallbackTTL:      cfg.GrokWSFallbackTTL,
		Selector:         cfg.GrokModelSelector,
		StatsigMode:      cfg.GrokStatsigMode,
		StatsigValue:     cfg.GrokStatsigValue.Reveal(),
		StatsigSignerURL: cfg.GrokStatsigSignerURL,
		UserAgent:        cfg.GrokUserAgent,
		ClientHints:      cfg.GrokClientHints,
		TLSProfile:       cfg.GrokTLSProfile,
		ProxyURL:         cfg.GrokProxyURL.Reveal(),
	}
}

// SessionChecker checks stored sessions against their upstream without
// spending chat quota. It reads the store and decrypts credentials with
// the keyring, so it works beside a running gateway on the same store.
type SessionChecker struct {
	Store   store.Store
	Keyring *keyring.Keyring
	Grok    *grokweb.Client
	XAI     *xai.Client
}

var _ admin.SessionChecker = (*SessionChecker)(nil)

// NewSessionChecker builds the upstream clients of cfg for checks.
func NewSessionChecker(cfg config.Config, st store.Store, kr *keyring.Keyring) (*SessionChecker, error) {
	gc := GrokConfig(cfg)
	if err := gc.Validate(); err != nil {
		return nil, fmt.Errorf("grok settings: %w", err)
	}
	xc := xai.Config{BaseURL: cfg.XAIBaseURL}
	if err := xc.Validate(); err != nil {
		return nil, fmt.Errorf("XAI_BASE_URL: %w", err)
	}
	return &SessionChecker{Store: st, Keyring: kr, Grok: grokweb.New(gc), XAI: xai.New(xc)}, nil
}

// CheckSession checks the session with this id. It returns
// store.ErrNotFound for an unknown id.
func (c *SessionChecker) CheckSession(ctx context.Context, id string) (admin.SessionCheck, error) {
	s, err := c.Store.Session(ctx, id)
	if err != nil {
		return admin.SessionCheck{}, err
	}
	cred, err := c.credential(s)
	if err != nil {
		return admin.SessionCheck{}, err
	}
	out := admin.SessionCheck{SessionID: s.ID, Provider: s.Provider}
	switch s.Provider {
	case store.ProviderGrok:
		out.Report, err = c.Grok.Check(ctx, cred)
		return out, err
	case store.ProviderXAI:
		out.Report = c.checkXAI(ctx, cred)
		return out, ctx.Err()
	}
	return admin.SessionCheck{}, fmt.Errorf("session %s has unknown provider %q", s.ID, s.Provider)
}

// checkXAI reads the model list with the API key: the one call that
// shows the key works without spending tokens.
func (c *SessionChecker) checkXAI(ctx context.Context, cred upstream.Credential) grokweb.Report {
	r := grokweb.Report{Transport: "api", Quota: map[string]grokweb.CheckQuota{},
		Transports: map[string]grokweb.CheckResult{}, Selectors: map[string]grokweb.CheckResult{}, Problems: []string{}}
	_, err := c.XAI.Probe(ctx, cred)
	if err == nil {
		r.Login, r.Usable = true, true
		r.Transports["api"] = grokweb.CheckResult{Status: grokweb.CheckOK, Detail: "the model list answers"}
		return r
	}
	line := string(upstream.OutcomeOf(err))
	if ue, ok := err.(*upstream.Error); ok && ue.Status != 0 {
		line += fmt.Sprintf(" (status %d)", ue.Status)
	}
	switch upstream.OutcomeOf(err) {
	case upstream.OutcomeUnauthorized, upstream.OutcomeBlocked:
		r.Transports["api"] = grokweb.CheckResult{Status: grokweb.CheckFailed, Detail: line}
		r.Problems = append(r.Problems, "API key rejected: "+line)
	default:
		r.Login = false
		r.Transports["api"] = grokweb.CheckResult{Status: grokweb.CheckUnknown, Detail: line}
		r.Problems = append(r.Problems, "model list: "+line)
	}
	return r
}

// credential decrypts the session's credential and proxy URL.
func (c *SessionChecker) credential(s store.Session) (upstream.Credential, error) {
	cred, proxy, err := pool.OpenCredential(c.Keyring, s)
	if err != nil {
		return upstream.Credential{}, err
	}
	return upstream.Credential{SessionID: s.ID, Secret: cred, ProxyURL: proxy, AccountID: s.Metadata.AccountID}, nil
}

// DeleteConversation deletes a conversation on the Grok web account of
// the session that holds it, for erasures. Sessions of other providers
// keep no conversations upstream, so nothing is deleted for them.
func (c *SessionChecker) DeleteConversation(ctx context.Context, sessionID, upstreamID string) error {
	s, err := c.Store.Session(ctx, sessionID)
	if err != nil {
		return err
	}
	if s.Provider != store.ProviderGrok {
		return nil
	}
	cred, err := c.credential(s)
	if err != nil {
		return err
	}
	return c.Grok.DeleteConversation(ctx, cred, upstreamID)
}
