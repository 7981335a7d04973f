package xai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FaultKind names a failure the server can inject into the chat and image
// requests of one key.
type FaultKind string

// The fault kinds.
const (
	// FaultUnauthorized responds 401, as for a deleted key.
	FaultUnauthorized FaultKind = "unauthorized"
	// FaultForbidden responds 403, as when the key's team has no credits.
	FaultForbidden FaultKind = "forbidden"
	// FaultRateLimited responds 429 with x-ratelimit-remaining-requests 0,
	// x-ratelimit-reset-requests and, unless Fault.NoRetryAfter, a
	// Retry-After header, all set from Fault.RetryAfter (default 60s).
	FaultRateLimited FaultKind = "rate_limited"
	// FaultServerError responds with Fault.Status (default 503).
	FaultServerError FaultKind = "server_error"
	// FaultSlowFirstByte waits Fault.Delay before the headers, then
	// responds normally.
	FaultSlowFirstByte FaultKind = "slow_first_byte"
	// FaultCut aborts a streamed response after Fault.AfterChunks chunks.
	// A non-streamed response is not affected.
	FaultCut FaultKind = "cut"
)

var faultKinds = []FaultKind{
	FaultUnauthorized, FaultForbidden, FaultRateLimited, FaultServerError, FaultSlowFirstByte, FaultCut,
}

// Fault is a failure injected into the requests of one key.
type Fault struct {
	Kind FaultKind
	// Times is how many requests the fault hits before it is removed.
	// Zero means every request until cleared.
	Times int
	// Status is the HTTP status of FaultServerError. Zero means 503.
	Status int
	// Delay is the pause of FaultSlowFirstByte.
	Delay time.Duration
	// AfterChunks is how many chunks FaultCut lets through first.
	AfterChunks int
	// RetryAfter is the wait that FaultRateLimited announces. Zero means
	// 60s.
	RetryAfter time.Duration
	// NoRetryAfter leaves out the Retry-After header of FaultRateLimited,
	// so only the x-ratelimit-* headers give the reset time.
	NoRetryAfter bool
}

const defaultFaultRetryAfter = 60 * time.Second

// SetFault injects f into the requests of key k, replacing any earlier
// fault of k. A zero Kind removes it.
func (s *Server) SetFault(k string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Kind == "" {
		delete(s.faults, k)
		return
	}
	s.faults[k] = &f
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// takeFault returns the fault that hits this request of key k, spending
// one of its Times.
func (s *Server) takeFault(k string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.faults[k]
	if !ok {
		return Fault{}, false
	}
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, k)
		}
	}
	return *f, true
}

func (s *Server) countChat(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.keys[k]; ok {
		st.chats++
	}
}

// writeFault writes the response of a fault that replaces the response and
// reports true. For kinds that act on the response it writes nothing.
func writeFault(w http.ResponseWriter, f Fault) bool {
	switch f.Kind {
	case FaultUnauthorized:
		writeInvalidKey(w)
	case FaultForbidden:
		writeError(w, http.StatusForbidden, codePermission,
			"Your team does not have any credits or licenses to run requests.")
	case FaultRateLimited:
		retry := f.RetryAfter
		if retry <= 0 {
			retry = defaultFaultRetryAfter
		}
		seconds := strconv.Itoa(max(int((retry+time.Second-1)/time.Second), 1))
		h := w.Header()
		h.Set("x-ratelimit-limit-requests", "60")
		h.Set("x-ratelimit-remaining-requests", "0")
		h.Set("x-ratelimit-reset-requests", seconds+"s")
		if !f.NoRetryAfter {
			h.Set("Retry-After", seconds)
		}
		writeError(w, http.StatusTooManyRequests, codeExhausted, "Too many requests: the team's rate limit was reached.")
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
	default:
		return false
	}
	return true
}

// faultRequest is the body of POST /_emulator/faults. Durations are Go
// duration strings such as "1.5s".
type faultRequest struct {
	Key          string    `json:"key"`
	Kind         FaultKind `json:"kind"`
	Times        int       `json:"times"`
	Status       int       `json:"status"`
	Delay        string    `json:"delay"`
	AfterChunks  int       `json:"after_chunks"`
	RetryAfter   string    `json:"retry_after"`
	NoRetryAfter bool      `json:"no_retry_after"`
}

func (req faultRequest) fault() (Fault, error) {
	f := Fault{Kind: req.Kind, Times: req.Times, Status: req.Status, AfterChunks: req.AfterChunks, NoRetryAfter: req.NoRetryAfter}
	switch {
	case req.Key == "":
		return f, fmt.Errorf("missing key")
	case !slices.Contains(faultKinds, req.Kind):
		return f, fmt.Errorf("unknown kind %q", req.Kind)
	case req.Times < 0 || req.AfterChunks < 0:
		return f, fmt.Errorf("times and after_chunks must not be negative")
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
	s.SetFault(req.Key, f)
	w.WriteHeader(http.StatusNoContent)
}

// handleClearFaults serves DELETE /_emulator/faults. With ?key= it clears
// that key's fault only.
func (s *Server) handleClearFaults(w http.ResponseWriter, r *http.Request) {
	if k := r.URL.Query().Get("key"); k != "" {
		s.SetFault(k, Fault{})
	} else {
		s.ClearFaults()
	}
	w.WriteHeader(http.StatusNoContent)
}

// keyStats is one key in GET /_emulator/stats. It names the key by its
// last four characters only.
type keyStats struct {
	KeySuffix string    `json:"key_suffix"`
	Chats     int       `json:"chats"`
	Images    int       `json:"images"`
	Fault     FaultKind `json:"fault,omitempty"`
}

// handleStats serves GET /_emulator/stats.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	stats := struct {
		Requests  int        `json:"requests"`
		LastUsage Usage      `json:"last_usage"`
		Keys      []keyStats `json:"keys"`
	}{Requests: len(s.requests), LastUsage: s.lastUsage, Keys: []keyStats{}}
	for k, st := range s.keys {
		ks := keyStats{KeySuffix: k[max(len(k)-4, 0):], Chats: st.chats, Images: st.images}
		if f, ok := s.faults[k]; ok {
			ks.Fault = f.Kind
		}
		stats.Keys = append(stats.Keys, ks)
	}
	s.mu.Unlock()
	slices.SortFunc(stats.Keys, func(a, b keyStats) int { return strings.Compare(a.KeySuffix, b.KeySuffix) })
	writeJSON(w, http.StatusOK, stats)
}
