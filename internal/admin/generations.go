package admin

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/grokproxy/grokproxy/internal/api/openai"
	"github.com/grokproxy/grokproxy/internal/store"
)

// GenerationStore is the part of the store that lists request records.
type GenerationStore interface {
	Generations(ctx context.Context, f store.GenerationFilter) ([]store.Generation, error)
}

// ContentAccess decides whether the admin API shows stored prompt and
// response text. The zero value shows none.
type ContentAccess struct {
	// Show allows stored text to be shown; the gateway sets it when
	// STORE_CONTENT is "full".
	Show bool
	// Open decrypts the content columns of a record whose content is
	// encrypted. When Open is nil, such records show no text.
	Open func(store.Generation) (store.Generation, error)
}

// Paging limits of GET /admin/generations.
const (
	defaultGenerationPage = 50
	maxGenerationPage     = 200
	// maxGenerationScan bounds the rows one listing reads while it looks
	// for rows that match a status filter. Past it, the page ends early
	// with a cursor to continue from.
	maxGenerationScan = 5000
	// maxShownContentBytes bounds each text field of a listed record.
	maxShownContentBytes = 4000
)

// generationView is a request record as GET /admin/generations shows it.
type generationView struct {
	Object           string          `json:"object"` // "generation"
	ID               string          `json:"id"`
	RequestID        string          `json:"request_id"`
	CreatedAt        time.Time       `json:"created_at"`
	UserID           string          `json:"user_id"`
	KeyID            string          `json:"key_id"`
	SessionID        string          `json:"session_id"`
	ConversationID   string          `json:"conversation_id"`
	Provider         string          `json:"provider"`
	Model            string          `json:"model"`
	Stream           bool            `json:"stream"`
	Status           int             `json:"status"`
	ErrorType        string          `json:"error_type"`
	FinishReason     string          `json:"finish_reason"`
	PromptTokens     int             `json:"prompt_tokens"`
	CompletionTokens int             `json:"completion_tokens"`
	ReasoningTokens  int             `json:"reasoning_tokens"`
	TokensEstimated  bool            `json:"tokens_estimated"`
	LatencyMS        int64           `json:"latency_ms"`
	FirstTokenMS     *int64          `json:"first_token_ms"` // null when no token was sent
	ClientIP         string          `json:"client_ip"`
	Attempts         []store.Attempt `json:"attempts"`
	// Prompt and Response are present only when content may be shown.
	Prompt    *string `json:"prompt,omitempty"`
	Response  *string `json:"response,omitempty"`
	Truncated bool    `json:"content_truncated,omitempty"`
}

// generationList is the response body of GET /admin/generations.
type generationList struct {
	Object     string           `json:"object"` // "list"
	Data       []generationView `json:"data"`
	NextCursor *string          `json:"next_cursor"`
	// ContentShown reports whether this gateway shows prompt and response
	// text at all.
	ContentShown bool `json:"content_shown"`
}

// listGenerations serves GET /admin/generations: recent request records,
// newest first. Query parameters: limit (1-200, default 50), cursor (the
// next_cursor of the page before), user (a user id) and status ("ok" for
// statuses below 400, "error" for the others, or one HTTP status code).
func (h *Handler) listGenerations(w http.ResponseWriter, r *http.Request) error {
	if h.Generations == nil {
		return errNotConfigured("request record listing")
	}
	q := r.URL.Query()
	limit := defaultGenerationPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxGenerationPage {
			return openai.BadRequest("limit", "invalid_value", "limit must be an integer in 1-%d.", maxGenerationPage)
		}
		limit = n
	}
	match, err := statusMatcher(q.Get("status"))
	if err != nil {
		return err
	}
	var from generationCursor
	if v := q.Get("cursor"); v != "" {
		if from, err = parseGenerationCursor(v); err != nil {
			return openai.BadRequest("cursor", "invalid_value", "cursor must be the next_cursor of an earlier page.")
		}
	}

	out := generationList{Object: "list", Data: []generationView{}, ContentShown: h.Content.Show}
	var last generationCursor
	scanned := 0
	more, err := scanGenerations(r.Context(), h.Generations, q.Get("user"), from, func(g store.Generation) bool {
		scanned++
		last = cursorOf(g)
		if match(g.Status) {
			out.Data = append(out.Data, h.viewGeneration(g))
		}
		return len(out.Data) < limit && scanned < maxGenerationScan
	})
	if err != nil {
		return err
	}
	if more {
		next := last.String()
		out.NextCursor = &next
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
	return nil
}

// statusMatcher parses the status filter of GET /admin/generations.
func statusMatcher(v string) (func(int) bool, error) {
	switch v {
	case "":
		return func(int) bool { return true }, nil
	case "ok":
		return func(s int) bool { return s < 400 }, nil
	case "error":
		return func(s int) bool { return s >= 400 }, nil
	}
	code, err := strconv.Atoi(v)
	if err != nil || code < 100 || code > 599 {
		return nil, openai.BadRequest("status", "invalid_value",
			"status must be \"ok\", \"error\" or an HTTP status code such as 429.")
	}
	return func(s int) bool { return s == code }, nil
}

func (h *Handler) viewGeneration(g store.Generation) generationView {
	v := generationView{
		Object: "generation", ID: g.ID, RequestID: g.RequestID, CreatedAt: g.CreatedAt,
		UserID: g.UserID, KeyID: g.KeyID, SessionID: g.SessionID, ConversationID: g.ConversationID,
		Provider: g.Provider, Model: g.Model, Stream: g.Stream, Status: g.Status,
		ErrorType: g.ErrorType, FinishReason: g.FinishReason, PromptTokens: g.PromptTokens,
		CompletionTokens: g.CompletionTokens, ReasoningTokens: g.ReasoningTokens,
		TokensEstimated: g.TokensEstimated, LatencyMS: g.LatencyMS, ClientIP: g.ClientIP,
		Attempts: g.Attempts,
	}
	if v.Attempts == nil {
		v.Attempts = []store.Attempt{}
	}
	if g.FirstTokenMS > 0 {
		ms := g.FirstTokenMS
		v.FirstTokenMS = &ms
	}
	if !h.Content.Show {
		return v
	}
	if g.ContentCrypted {
		if h.Content.Open == nil {
			return v
		}
		opened, err := h.Content.Open(g)
		if err != nil {
			// The row stays listed; only its text is left out.
			h.Log.Warn("generation content not decrypted", "generation_id", g.ID, "error", err)
			return v
		}
		g = opened
	}
	prompt, cutPrompt := clip(g.Prompt, maxShownContentBytes)
	response, cutResponse := clip(g.Response, maxShownContentBytes)
	v.Prompt, v.Response = &prompt, &response
	v.Truncated = cutPrompt || cutResponse
	return v
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}

// generationCursor is a position in the newest-first order of the store:
// created_at descending, then id descending.
type generationCursor struct {
	At time.Time
	ID string
}

func cursorOf(g store.Generation) generationCursor {
	return generationCursor{At: g.CreatedAt, ID: g.ID}
}

// String encodes c as "<unix nanoseconds>_<id>".
func (c generationCursor) String() string {
	return strconv.FormatInt(c.At.UnixNano(), 10) + "_" + c.ID
}

func parseGenerationCursor(s string) (generationCursor, error) {
	nanos, id, ok := strings.Cut(s, "_")
	n, err := strconv.ParseInt(nanos, 10, 64)
	if !ok || err != nil || id == "" {
		return generationCursor{}, strconv.ErrSyntax
	}
	return generationCursor{At: time.Unix(0, n).UTC(), ID: id}, nil
}

// after reports whether g comes after c in newest-first order.
func (c generationCursor) after(g store.Generation) bool {
	if c.ID == "" {
		return true
	}
	if !g.CreatedAt.Equal(c.At) {
		return g.CreatedAt.Before(c.At)
	}
	return g.ID < c.ID
}

// scanGenerations calls fn on the records of userID (all users when empty)
// that come after from, newest first, until fn returns false or the
// records run out. It reports whether records may remain.
//
// The store pages only by a strict created_at bound, and SQLite keeps
// milliseconds, so several records can share one time. Each read therefore
// starts a millisecond past the last record seen and skips what was
// already seen. When a whole batch was already seen, the next read is larger.
func scanGenerations(ctx context.Context, src GenerationStore, userID string, from generationCursor,
	fn func(store.Generation) bool) (bool, error) {
	batch := 200
	for {
		f := store.GenerationFilter{UserID: userID, Limit: batch}
		if from.ID != "" {
			f.Before = from.At.Add(time.Millisecond)
		}
		rows, err := src.Generations(ctx, f)
		if err != nil {
			return false, err
		}
		fresh := 0
		for _, g := range rows {
			if !from.after(g) {
				continue
			}
			fresh++
			from = cursorOf(g)
			if !fn(g) {
				return true, nil
			}
		}
		if len(rows) < batch {
			return false, nil
		}
		if fresh == 0 {
			if batch >= 100_000 {
				return false, nil
			}
			batch *= 4
		}
	}
}
