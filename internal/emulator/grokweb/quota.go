package grokweb

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Tiers of Account.Tier.
const (
	TierBasic     = "basic"
	TierSuper     = "super"
	TierHeavy     = "heavy"
	TierUnlimited = "unlimited" // emulator only: every mode, large quota
)

// Mode ids of the 2026 modeId selector.
const (
	modeAuto        = "auto"
	modeFast        = "fast"
	modeExpert      = "expert"
	modeHeavy       = "heavy"
	modeComputerUse = "grok-420-computer-use-sa"
)

var modes = []string{modeAuto, modeFast, modeExpert, modeHeavy, modeComputerUse}

// limit is the quota of one mode: total chats per window.
type limit struct {
	total  int
	window time.Duration
}

const (
	shortWindow = 7200 * time.Second
	dayWindow   = 86400 * time.Second
)

// unlimitedChats is the per-window quota of TierUnlimited.
const unlimitedChats = 100000

// tierLimits lists the modes each tier may use and their quota. The totals
// follow those public proxies assume (Basic fast 30 per day; Super auto and
// expert 50, fast 140 per 2 h; Heavy auto and expert 150, fast 400, heavy 20
// per 2 h). A mode missing from a tier is denied with 403.
// NOTE: the Basic auto total (20) and the grok-420-computer-use-sa totals
// are guesses; no public source states them.
var tierLimits = map[string]map[string]limit{
	TierBasic: {
		modeAuto: {20, dayWindow},
		modeFast: {30, dayWindow},
	},
	TierSuper: {
		modeAuto:        {50, shortWindow},
		modeFast:        {140, shortWindow},
		modeExpert:      {50, shortWindow},
		modeComputerUse: {50, shortWindow},
	},
	TierHeavy: {
		modeAuto:        {150, shortWindow},
		modeFast:        {400, shortWindow},
		modeExpert:      {150, shortWindow},
		modeHeavy:       {20, shortWindow},
		modeComputerUse: {150, shortWindow},
	},
	TierUnlimited: {
		modeAuto:        {unlimitedChats, shortWindow},
		modeFast:        {unlimitedChats, shortWindow},
		modeExpert:      {unlimitedChats, shortWindow},
		modeHeavy:       {unlimitedChats, shortWindow},
		modeComputerUse: {unlimitedChats, shortWindow},
	},
}

// ValidTier reports whether name is one of the Tier constants.
func ValidTier(name string) bool {
	_, ok := tierLimits[name]
	return ok
}

// window is the use of one mode's quota. It opens at the first chat and
// resets once its limit's window has passed.
type window struct {
	start time.Time
	used  int
}

// quotaState is a mode's quota as the rate-limits route reports it.
type quotaState struct {
	total     int
	remaining int
	window    time.Duration
	resetAt   time.Time // zero while no window is open
	allowed   bool      // the tier may use the mode
}

func (a *account) quotaLocked(mode string, now time.Time) quotaState {
	l, ok := tierLimits[a.Tier][mode]
	if !ok {
		return quotaState{window: shortWindow}
	}
	q := quotaState{total: l.total, remaining: l.total, window: l.window, allowed: true}
	w := a.quota[mode]
	if w == nil || !now.Before(w.start.Add(l.window)) {
		return q
	}
	q.remaining = max(l.total-w.used, 0)
	q.resetAt = w.start.Add(l.window)
	return q
}

// spendLocked takes one chat from the mode's quota. When none is left it
// returns false and the time until the window resets.
func (a *account) spendLocked(mode string, now time.Time) (bool, time.Duration) {
	q := a.quotaLocked(mode, now)
	if q.remaining == 0 {
		return false, q.resetAt.Sub(now)
	}
	w := a.quota[mode]
	if q.resetAt.IsZero() {
		w = &window{start: now}
		a.quota[mode] = w
	}
	w.used++
	return true, 0
}

// spend charges one chat of mode to the account with this SSO. It returns
// false and the wait until the reset when the quota is spent.
func (s *Server) spend(sso, mode string) (bool, time.Duration) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[sso]
	if !ok {
		return false, 0
	}
	return a.spendLocked(mode, now)
}

// modeAllowed reports whether the tier may use mode.
func modeAllowed(tier, mode string) bool {
	_, ok := tierLimits[tier][mode]
	return ok
}

// legacyModelModes maps the 2025 to early 2026 modelMode enum to mode ids.
var legacyModelModes = map[string]string{
	"MODEL_MODE_AUTO":                   modeAuto,
	"MODEL_MODE_FAST":                   modeFast,
	"MODEL_MODE_EXPERT":                 modeExpert,
	"MODEL_MODE_HEAVY":                  modeHeavy,
	"MODEL_MODE_GROK_3":                 modeFast,
	"MODEL_MODE_GROK_4":                 modeAuto,
	"MODEL_MODE_GROK_420":               modeAuto,
	"MODEL_MODE_GROK_4_3":               modeComputerUse,
	"MODEL_MODE_GROK_3_THINKING":        modeExpert,
	"MODEL_MODE_GROK_3_MINI_THINKING":   modeExpert,
	"MODEL_MODE_GROK_4_THINKING":        modeExpert,
	"MODEL_MODE_GROK_4_MINI_THINKING":   modeExpert,
	"MODEL_MODE_GROK_4_1_THINKING":      modeExpert,
	"MODEL_MODE_GROK_4_1_MINI_THINKING": modeExpert,
}

// resolveMode picks the mode of a chat from the three selector styles:
// modeId (2026), modelMode (2025-07 to 2026-03) and modelName with
// isReasoning (2025). A body with none of them gets auto.
func resolveMode(modeID, modelName, modelMode string, isReasoning bool) (string, error) {
	if modeID != "" {
		if !isMode(modeID) {
			return "", fmt.Errorf("unknown modeId %q", modeID)
		}
		return modeID, nil
	}
	if modelMode != "" {
		mode, ok := legacyModelModes[modelMode]
		if !ok {
			return "", fmt.Errorf("unknown modelMode %q", modelMode)
		}
		return mode, nil
	}
	if modelName == "" {
		return modeAuto, nil
	}
	return modeForModelName(modelName, isReasoning)
}

// modeForModelName maps a bare modelName: a mode id as the 2026
// rate-limits body sends it, or a grok-* or imagine-* model name.
func modeForModelName(name string, isReasoning bool) (string, error) {
	switch {
	case isMode(name):
		return name, nil
	case !strings.HasPrefix(name, "grok-") && !strings.HasPrefix(name, "imagine-"):
		return "", fmt.Errorf("unknown modelName %q", name)
	case strings.Contains(name, "heavy"):
		return modeHeavy, nil
	case isReasoning, strings.Contains(name, "reasoning"), strings.Contains(name, "thinking"):
		return modeExpert, nil
	case strings.HasPrefix(name, "imagine-"):
		return modeFast, nil
	}
	return modeAuto, nil
}

func isMode(name string) bool {
	for _, m := range modes {
		if m == name {
			return true
		}
	}
	return false
}

// rateLimitsRequest is the body of POST /rest/rate-limits in both forms:
// {"modelName":"fast"} (2026) and {"requestKind":"DEFAULT","modelName":"grok-3"} (2025).
type rateLimitsRequest struct {
	RequestKind string `json:"requestKind"`
	ModelName   string `json:"modelName"`
}

// handleRateLimits serves POST /rest/rate-limits. A mode the tier may not
// use reports zero totals, which is how clients tell the tier apart.
func (s *Server) handleRateLimits(w http.ResponseWriter, r *http.Request) {
	acct, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	var req rateLimitsRequest
	if !decodeBody(w, r, &req) {
		return
	}
	mode, err := modeForModelName(req.ModelName, false)
	if req.ModelName == "" {
		mode, err = modeAuto, nil
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, err.Error())
		return
	}
	switch req.RequestKind {
	case "", "DEFAULT":
	case "REASONING", "DEEPSEARCH", "DEEPERSEARCH":
		if mode != modeHeavy {
			mode = modeExpert
		}
	default:
		writeError(w, http.StatusBadRequest, codeInvalidArgument,
			fmt.Sprintf("unknown requestKind %q", req.RequestKind))
		return
	}

	now := s.now()
	s.mu.Lock()
	a, ok := s.accounts[acct.SSO]
	var q quotaState
	if ok {
		q = a.quotaLocked(mode, now)
	}
	s.mu.Unlock()
	if !ok {
		writeInvalidLogin(w) // removed while the request ran
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"windowSizeSeconds":    int(q.window / time.Second),
		"remainingQueries":     q.remaining,
		"totalQueries":         q.total,
		"lowEffortRateLimits":  nil,
		"highEffortRateLimits": nil,
	})
}

// handleMediaQuota serves POST /rest/media/imagine/quota_info. Images draw
// on the chat quota in the emulator, so the media counters stay full.
func (s *Server) handleMediaQuota(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authenticate(w, r); !ok {
		return
	}
	next := s.now().Add(dayWindow).UTC().Format(time.RFC3339)
	product := func(remaining int) map[string]any {
		return map[string]any{
			"available":         true,
			"remainingQueries":  remaining,
			"windowSizeSeconds": int(dayWindow / time.Second),
			"nextAvailableAt":   next,
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"image":     product(100),
		"imagePro":  nil,
		"imageEdit": product(100),
		"video":     nil,
		"video720p": nil,
	})
}

// subscriptionTiers maps tiers to the tier strings of /rest/subscriptions.
// Basic accounts have no subscription.
var subscriptionTiers = map[string]string{
	TierSuper:     "SUBSCRIPTION_TIER_GROK_PRO",
	TierHeavy:     "SUBSCRIPTION_TIER_SUPER_GROK_PRO",
	TierUnlimited: "SUBSCRIPTION_TIER_SUPER_GROK_PRO",
}

// handleSubscriptions serves GET /rest/subscriptions.
func (s *Server) handleSubscriptions(w http.ResponseWriter, r *http.Request) {
	acct, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	subs := []map[string]any{}
	if tier, ok := subscriptionTiers[acct.Tier]; ok {
		subs = append(subs, map[string]any{
			"xaiUserId": acct.UserID,
			"tier":      tier,
			"status":    "SUBSCRIPTION_STATUS_ACTIVE",
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscriptions": subs})
}

// handleModels serves POST /rest/models with one entry per mode the
// account's tier may use.
func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	acct, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	models, unavailable := []map[string]any{}, []map[string]any{}
	for _, mode := range modes {
		m := map[string]any{
			"modelId":          backendModel(mode),
			"name":             "Grok " + mode,
			"description":      "Emulated " + mode + " mode",
			"tags":             []string{},
			"badgeText":        "",
			"modelMode":        legacyModeName(mode),
			"modeDescription":  "",
			"modeName":         mode,
			"promptingBackend": "",
		}
		if modeAllowed(acct.Tier, mode) {
			models = append(models, m)
		} else {
			unavailable = append(unavailable, m)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"models":            models,
		"unavailableModels": unavailable,
		"defaultFreeModel":  backendModel(modeFast),
		"defaultProModel":   backendModel(modeAuto),
		"defaultAnonModel":  backendModel(modeFast),
		"defaultHeavyModel": backendModel(modeHeavy),
		"defaultAnonMode":   modeFast,
		"defaultFreeMode":   modeFast,
		"defaultProMode":    modeAuto,
		"defaultHeavyMode":  modeHeavy,
	})
}

// backendModel is the model name frames report for a mode, in the style of
// grok.com's "grok-4-auto".
func backendModel(mode string) string {
	if mode == modeComputerUse {
		return mode
	}
	return "grok-4-" + mode
}

// legacyModeName is the modelMode enum value of a mode.
func legacyModeName(mode string) string {
	if mode == modeComputerUse {
		return "MODEL_MODE_GROK_4_3"
	}
	return "MODEL_MODE_" + strings.ToUpper(mode)
}

// reasoningMode reports whether a mode streams thinking tokens first.
func reasoningMode(mode string) bool {
	return mode == modeExpert || mode == modeHeavy
}
