package grokweb

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FaultKind names a failure the server can inject into chat requests.
type FaultKind string

// The fault kinds. Each one responds the way grok.com responds in that situation.
const (
	// FaultUnauthorized responds 401 with the invalid-credentials marker.
	FaultUnauthorized FaultKind = "unauthorized"
	// FaultAntiBot responds 403 with code 7 "Request rejected by anti-bot rules.".
	FaultAntiBot FaultKind = "antibot"
	// FaultCloudflare responds 403 with a Cloudflare "Just a moment..." HTML page.
	FaultCloudflare FaultKind = "cloudflare"
	// FaultServerError responds with Fault.Status (default 503) with a JSON error.
	FaultServerError FaultKind = "server_error"
	// FaultSlowFirstByte waits Fault.Delay before the headers, then streams normally.
	FaultSlowFirstByte FaultKind = "slow_first_byte"
	// FaultCut aborts the connection after Fault.AfterFrames frames.
	FaultCut FaultKind = "cut"
	// FaultErrorFrame sends a top-level {"error":{"code":8,...}} line after
	// Fault.AfterFrames frames of a 200 stream, then ends the stream.
	FaultErrorFrame FaultKind = "error_frame"
	// FaultRateLimited responds 429 with code 8 and a Retry-After header of
	// Fault.RetryAfter (default 60s).
	FaultRateLimited FaultKind = "rate_limited"
	// FaultBlocked responds 403 with code 7 and the blocked-user marker.
	FaultBlocked FaultKind = "blocked"
)

var faultKinds = map[FaultKind]bool{
	FaultUnauthorized: true, FaultAntiBot: true, FaultCloudflare: true,
	FaultServerError: true, FaultSlowFirstByte: true, FaultCut: true,
	FaultErrorFrame: true, FaultRateLimited: true, FaultBlocked: true,
}

// Fault is a failure injected into the chat requests of one account. Faults
// apply to chat routes only, except that a FaultUnauthorized or FaultBlocked
// with Times 0 also makes the login check report the account as
// unauthenticated or blocked, because a fault that never ends models a dead
// or blocked login.
type Fault struct {
	Kind FaultKind
	// Times is how many chat requests the fault hits before it is removed.
	// Zero means every request until cleared.
	Times int
	// Status is the HTTP status of FaultServerError. Zero means 503.
	Status int
	// Delay is the pause of FaultSlowFirstByte.
	Delay time.Duration
	// AfterFrames is how many frames FaultCut and FaultErrorFrame let
	// through first. Zero means none.
	AfterFrames int
	// RetryAfter is the Retry-After of FaultRateLimited. Zero means 60s.
	RetryAfter time.Duration
}

const defaultFaultRetryAfter = 60 * time.Second

// SetFault injects f into the chat requests of the account with this SSO,
// replacing any earlier fault of that account. A zero Kind removes it.
func (s *Server) SetFault(sso string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Kind == "" {
		delete(s.faults, sso)
		return
	}
	s.faults[sso] = &f
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// takeFault returns the fault that hits this chat request of the account
// with this SSO, spending one of its Times.
func (s *Server) takeFault(sso string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.faults[sso]
	if !ok {
		return Fault{}, false
	}
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, sso)
		}
	}
	return *f, true
}

// permanentFault returns the kind of the never-ending fault of this
// account, or "" when it has none.
func (s *Server) permanentFault(sso string) FaultKind {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.faults[sso]; ok && f.Times == 0 {
		return f.Kind
	}
	return ""
}

// writeFault writes the response of a request-level fault and reports true. For kinds that
// act on the stream (slow first byte, cut, error frame) it writes nothing
// and reports false.
func writeFault(w http.ResponseWriter, f Fault) bool {
	switch f.Kind {
	case FaultUnauthorized:
		writeInvalidLogin(w)
	case FaultAntiBot:
		writeAntiBot(w)
	case FaultCloudflare:
		writeChallenge(w)
	case FaultServerError:
		status := f.Status
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		code := codeUnavailable
		if status == http.StatusInternalServerError {
			code = codeInternal
		}
		writeError(w, status, code, http.StatusText(status))
	case FaultRateLimited:
		retry := f.RetryAfter
		if retry <= 0 {
			retry = defaultFaultRetryAfter
		}
		writeTooManyRequests(w, retry)
	case FaultBlocked:
		writeError(w, http.StatusForbidden, codePermissionDenied,
			"User is blocked [WKE=unauthorized:blocked-user]")
	default:
		return false
	}
	return true
}

// writeTooManyRequests responds 429 with code 8 and a Retry-After in whole
// seconds, rounded up.
// NOTE: grok.com's use of Retry-After is not confirmed; clients that honour
// it exist, so the emulator sends it.
func writeTooManyRequests(w http.ResponseWriter, retry time.Duration) {
	seconds := int((retry + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(seconds, 1)))
	writeError(w, http.StatusTooManyRequests, codeResourceExhausted, "Too many requests")
}

// challengePage imitates a Cloudflare managed challenge. Clients detect it
// by its title and the challenge-platform, __cf_chl, cf-chl- and
// window._cf_chl_opt markers.
const challengePage = `<!DOCTYPE html>
<html lang="en-US">
<head>
<title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<meta name="robots" content="noindex,nofollow">
</head>
<body>
<div class="main-wrapper" role="main">
<div class="main-content">
<h1 class="zone-name-title h1">grok.com</h1>
<h2 class="h2" id="challenge-running">Verifying you are human. This may take a few seconds.</h2>
<noscript><div class="cf-chl-noscript">Enable JavaScript and cookies to continue</div></noscript>
</div>
</div>
<script>
window._cf_chl_opt = {cvId: '3', cZone: 'grok.com', cType: 'managed', cRay: '0000000000000000'};
var form = document.createElement('form');
form.action = '/?__cf_chl_f_tk=emulated';
</script>
<script src="/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1?ray=0000000000000000"></script>
</body>
</html>
`

func writeChallenge(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.Header().Set("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate")
	w.Header().Set("cf-mitigated", "challenge")
	w.WriteHeader(http.StatusForbidden)
	w.Write([]byte(challengePage))
}

// faultRequest is the body of POST /_emulator/faults. Durations are Go
// duration strings such as "1.5s".
type faultRequest struct {
	SSO         string    `json:"sso"`
	Kind        FaultKind `json:"kind"`
	Times       int       `json:"times"`
	Status      int       `json:"status"`
	Delay       string    `json:"delay"`
	AfterFrames int       `json:"after_frames"`
	RetryAfter  string    `json:"retry_after"`
}

func (req faultRequest) fault() (Fault, error) {
	f := Fault{Kind: req.Kind, Times: req.Times, Status: req.Status, AfterFrames: req.AfterFrames}
	switch {
	case req.SSO == "":
		return f, fmt.Errorf("missing sso")
	case !faultKinds[req.Kind]:
		return f, fmt.Errorf("unknown kind %q", req.Kind)
	case req.Times < 0 || req.AfterFrames < 0:
		return f, fmt.Errorf("times and after_frames must not be negative")
	case req.Status != 0 && (req.Status < 500 || req.Status > 599):
		return f, fmt.Errorf("status %d is not a 5xx status", req.Status)
	}
	var err error
	if f.Delay, err = parseDuration(req.Delay); err != nil {
		return f, fmt.Errorf("invalid delay: %w", err)
	}
	if f.RetryAfter, err = parseDuration(req.RetryAfter); err != nil {
		return f, fmt.Errorf("invalid retry_after: %w", err)
	}
	return f, nil
}

func parseDuration(text string) (time.Duration, error) {
	if text == "" {
		return 0, nil
	}
	return time.ParseDuration(text)
}

// handleSetFault serves POST /_emulator/faults.
func (s *Server) handleSetFault(w http.ResponseWriter, r *http.Request) {
	var req faultRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "invalid JSON body: "+err.Error())
		return
	}
	f, err := req.fault()
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, err.Error())
		return
	}
	s.SetFault(req.SSO, f)
	w.WriteHeader(http.StatusNoContent)
}

// handleClearFaults serves DELETE /_emulator/faults. With ?sso= it clears
// that account's fault only.
func (s *Server) handleClearFaults(w http.ResponseWriter, r *http.Request) {
	if sso := r.URL.Query().Get("sso"); sso != "" {
		s.SetFault(sso, Fault{})
	} else {
		s.ClearFaults()
	}
	w.WriteHeader(http.StatusNoContent)
}

// accountStats is one account in GET /_emulator/stats. It names the account
// by user id, never by cookie.
type accountStats struct {
	UserID string                `json:"user_id"`
	Tier   string                `json:"tier"`
	Chats  int                   `json:"chats"`
	Fault  FaultKind             `json:"fault,omitempty"`
	Quota  map[string]quotaStats `json:"quota"`
}

type quotaStats struct {
	Remaining int `json:"remaining"`
	Total     int `json:"total"`
}

// handleStats serves GET /_emulator/stats.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	s.mu.Lock()
	stats := struct {
		Requests      int            `json:"requests"`
		Conversations int            `json:"conversations"`
		Accounts      []accountStats `json:"accounts"`
	}{Requests: len(s.requests), Conversations: len(s.conversations), Accounts: []accountStats{}}
	for sso, a := range s.accounts {
		as := accountStats{UserID: a.UserID, Tier: a.Tier, Chats: a.chats, Quota: map[string]quotaStats{}}
		if f, ok := s.faults[sso]; ok {
			as.Fault = f.Kind
		}
		for _, mode := range modes {
			q := a.quotaLocked(mode, now)
			as.Quota[mode] = quotaStats{Remaining: q.remaining, Total: q.total}
		}
		stats.Accounts = append(stats.Accounts, as)
	}
	s.mu.Unlock()
	slices.SortFunc(stats.Accounts, func(a, b accountStats) int { return strings.Compare(a.UserID, b.UserID) })
	writeJSON(w, http.StatusOK, stats)
}
