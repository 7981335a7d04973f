// Package store defines the records the gateway keeps and the Store
// interface that the SQLite and PostgreSQL backends implement. Both backends
// pass the conformance suite in store/storetest.
//
// All times are UTC. A zero time.Time means "not set" and is stored as NULL.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a record with the given id does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a write would break a uniqueness rule, such
// as a second session with the same credential hash.
var ErrConflict = errors.New("already exists")

// Providers of upstream sessions.
const (
	ProviderGrok = "grok" // Grok web app, authenticated by cookies
	ProviderXAI  = "xai"  // official xAI API, authenticated by an API key
)

// Session statuses. A healthy session is in rotation unless CooldownUntil is
// in the future.
const (
	StatusHealthy     = "healthy"
	StatusQuarantined = "quarantined"
	StatusExpired     = "expired"
	StatusRevoked     = "revoked"
)

// Session is one upstream account login the gateway may spend.
type Session struct {
	ID       string
	Provider string // ProviderGrok or ProviderXAI

	// Credential is the keyring ciphertext of the cookie text or API key;
	// it is bound to the row by its id and the column name.
	Credential []byte
	// CredentialHash is the hex SHA-256 of the normalised credential. It is
	// unique, so a duplicate is rejected with ErrConflict.
	CredentialHash string
	// ProxyURL is the keyring ciphertext of the outbound proxy URL; nil
	// means the default egress.
	ProxyURL []byte

	Label          string
	Status         string
	StatusReason   string
	CooldownUntil  time.Time // zero when not resting
	Weight         int       // relative share in selection; 0 means 1
	MaxConcurrency int       // in-flight requests allowed; 0 means no cap

	CreatedAt         time.Time
	UpdatedAt         time.Time
	LastUsedAt        time.Time
	ExpiresAt         time.Time // zero when the login has no known end
	LastHealthCheckAt time.Time

	UsageCount   int64
	SuccessCount int64
	FailureCount int64

	Metadata SessionMetadata
}

// SessionMetadata is the JSON document kept in the metadata column.
type SessionMetadata struct {
	Tier      string           `json:"tier,omitempty"`       // e.g. "basic", "super", "heavy"
	AccountID string           `json:"account_id,omitempty"` // upstream user id, when known
	Quota     map[string]Quota `json:"quota,omitempty"`      // by upstream model or mode
	// History holds the latest status transitions, oldest first, capped at
	// MaxHistory entries.
	History []StatusChange `json:"history,omitempty"`
}

// MaxHistory is the number of status transitions kept per session.
const MaxHistory = 20

// Quota is the remaining allowance of one model on one session.
type Quota struct {
	Remaining     int       `json:"remaining"`
	Total         int       `json:"total"`
	WindowSeconds int       `json:"window_seconds"`
	ResetAt       time.Time `json:"reset_at"`
	CheckedAt     time.Time `json:"checked_at"`
}

// StatusChange records one transition of a session.
type StatusChange struct {
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"` // a status, or "resting" for a cool-down
	Reason string    `json:"reason"`
}

// SessionState is the mutable part of a session that the pool saves.
type SessionState struct {
	Status            string
	StatusReason      string
	CooldownUntil     time.Time
	LastUsedAt        time.Time
	LastHealthCheckAt time.Time
	UsageCount        int64
	SuccessCount      int64
	FailureCount      int64
	Metadata          SessionMetadata
}

// SessionFilter selects sessions for listing. Empty fields match all.
type SessionFilter struct {
	Status   string
	Provider string
	After    string // return sessions whose id sorts after this one
	Limit    int    // 0 means no limit
}

// User is a person or application with its own keys and limits.
type User struct {
	ID     string
	Name   string
	Role   string // RoleUser or RoleAdmin
	Active bool
	// RateLimitPerMinute is nil when the gateway default applies.
	RateLimitPerMinute *int
	// MaxConcurrentPerKey caps in-flight requests per key; 0 means no cap.
	MaxConcurrentPerKey int
	// Models lists the public model ids the user may call; empty means all.
	Models    []string
	ExpiresAt time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
	Metadata  map[string]string
}

// User roles.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// APIKey is a client key. Only its bcrypt hash is stored; KeyID is the
// public part of the key text used to find the row.
type APIKey struct {
	ID         string
	UserID     string
	KeyID      string // public lookup id, unique
	Name       string
	Prefix     string // first characters of the key text, for display
	SecretHash []byte // bcrypt hash of the secret part
	CreatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time // zero means no expiry
	RevokedAt  time.Time // zero while the key is valid
	// RotatedFrom is the id of the key this one replaced, if any.
	RotatedFrom string
	// RotationRequestID makes rotation idempotent: a second rotation of
	// the same key with the same request id returns the first result.
	RotationRequestID string
}

// Generation is the audit record of one admitted request.
type Generation struct {
	ID             string // server-generated, unique; replays are idempotent on it
	RequestID      string // client-visible request id
	UserID         string
	KeyID          string
	SessionID      string
	ConversationID string
	Provider       string
	Model          string

	Prompt    string
	Response  string
	Reasoning string

	FinishReason     string
	PromptTokens     int
	CompletionTokens int
	ReasoningTokens  int
	TokensEstimated  bool

	Status    int    // HTTP status sent to the client
	ErrorType string // OpenAI error type or upstream outcome; empty on success
	Attempts  []Attempt

	LatencyMS      int64
	FirstTokenMS   int64 // 0 when no token was sent
	ClientIP       string
	Stream         bool
	CreatedAt      time.Time
	ContentCrypted bool // Prompt, Response and Reasoning hold keyring ciphertext
}

// Attempt is one upstream try within a request.
type Attempt struct {
	SessionID string `json:"session_id"`
	Outcome   string `json:"outcome"`
	Status    int    `json:"status,omitempty"`
	LatencyMS int64  `json:"latency_ms"`
}

// GenerationFilter selects generations for listing, newest first.
type GenerationFilter struct {
	UserID string
	Before time.Time // zero means now
	Limit  int       // 0 means 100
}

// Conversation links an upstream conversation to the history that led to it,
// so a follow-up can continue it on the same session.
type Conversation struct {
	ID             string
	UserID         string
	SessionID      string
	Model          string
	HistoryHash    string // HMAC of user, model, system prompt and messages; unique
	UpstreamID     string // upstream conversation id
	LastResponseID string // upstream id of the last assistant response
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// AuditEvent records an admin action. Hash chains each row to the one
// before it, so editing or deleting a row is detected.
type AuditEvent struct {
	Seq       int64 // assigned by the store, increasing
	ID        string
	At        time.Time
	Actor     string
	Action    string
	Target    string
	ClientIP  string
	RequestID string
	Details   map[string]any
	PrevHash  string
	Hash      string
}

// DefaultAuditPage is the page size of AuditEvents when the filter sets
// none.
const DefaultAuditPage = 100

// AuditEventFilter selects audit events for listing, newest first.
type AuditEventFilter struct {
	BeforeSeq int64 // return events with a Seq below this one; 0 means from the newest
	Limit     int   // 0 means DefaultAuditPage
}

// AuditCheck is the result of walking the audit hash chain.
type AuditCheck struct {
	Checked int64 // rows read, in Seq order, up to and including a broken one
	// BrokenSeq is the Seq of the first row whose PrevHash does not match
	// the row before it or whose Hash does not match its content; 0 when
	// the chain is intact.
	BrokenSeq int64
	BrokenID  string
	Reason    string // what did not match; empty when intact
}

// Intact reports whether the chain had no broken row.
func (c AuditCheck) Intact() bool { return c.BrokenSeq == 0 }

// UserData is everything the store holds about one user. User is nil for a
// principal without a user row, such as a static key.
type UserData struct {
	User          *User
	Keys          []APIKey
	Conversations []Conversation
	Generations   []Generation
}

// Erasure counts the rows that an erasure of a user's data deleted.
type Erasure struct {
	User          bool  `json:"user"`
	Keys          int64 `json:"api_keys"`
	Conversations int64 `json:"conversations"`
	Generations   int64 `json:"generations"`
}

// Store is the gateway's persistent state. Implementations are safe for
// concurrent use.
type Store interface {
	// Migrate applies pending schema migrations.
	Migrate(ctx context.Context) error
	Close() error
	Ping(ctx context.Context) error

	CreateSession(ctx context.Context, s *Session) error
	Session(ctx context.Context, id string) (Session, error)
	Sessions(ctx context.Context, f SessionFilter) ([]Session, error)
	SaveSessionState(ctx context.Context, id string, st SessionState) error
	SetSessionCredential(ctx context.Context, id string, credential, proxyURL []byte) error
	DeleteSession(ctx context.Context, id string) error

	CreateUser(ctx context.Context, u *User) error
	User(ctx context.Context, id string) (User, error)
	Users(ctx context.Context) ([]User, error)
	UpdateUser(ctx context.Context, u *User) error
	DeleteUser(ctx context.Context, id string) error
	// CountAdmins returns the number of active admin users.
	CountAdmins(ctx context.Context) (int, error)

	CreateAPIKey(ctx context.Context, k *APIKey) error
	APIKeyByKeyID(ctx context.Context, keyID string) (APIKey, error)
	APIKey(ctx context.Context, id string) (APIKey, error)
	APIKeys(ctx context.Context, userID string) ([]APIKey, error)
	// RotatedKey returns the key that rotated oldID with requestID.
	RotatedKey(ctx context.Context, oldID, requestID string) (APIKey, error)
	SetAPIKeyExpiry(ctx context.Context, id string, at time.Time) error
	RevokeAPIKey(ctx context.Context, id string, at time.Time) error
	// APIKeysRevokedSince lists keys revoked or expiring at or after t.
	APIKeysRevokedSince(ctx context.Context, t time.Time) ([]APIKey, error)
	TouchAPIKeys(ctx context.Context, lastUsed map[string]time.Time) error

	// InsertGenerations writes a batch. A row whose ID exists is skipped,
	// so a batch may be replayed.
	InsertGenerations(ctx context.Context, gs []Generation) error
	Generations(ctx context.Context, f GenerationFilter) ([]Generation, error)
	CountGenerations(ctx context.Context) (int64, error)

	SaveConversation(ctx context.Context, c *Conversation) error
	ConversationByHash(ctx context.Context, userID, hash string) (Conversation, error)

	// AppendAuditEvent adds e at the end of the hash chain and fills its
	// Seq, PrevHash and Hash (and ID and At when empty). Appends are
	// serialised, across processes and replicas, so the chain never forks.
	AppendAuditEvent(ctx context.Context, e *AuditEvent) error
	// AuditEvents lists events newest first.
	AuditEvents(ctx context.Context, f AuditEventFilter) ([]AuditEvent, error)
	// VerifyAuditChain walks every event in Seq order and reports the
	// first row that breaks the chain.
	VerifyAuditChain(ctx context.Context) (AuditCheck, error)

	// DeleteGenerationsBefore deletes at most limit generations created
	// before t and returns how many it deleted.
	DeleteGenerationsBefore(ctx context.Context, t time.Time, limit int) (int64, error)
	// DeleteDeadSessionsBefore deletes at most limit expired or revoked
	// sessions last updated before t and returns their ids.
	DeleteDeadSessionsBefore(ctx context.Context, t time.Time, limit int) ([]string, error)

	// UserData returns every record of userID: profile, keys (hashes
	// included; callers drop them), conversations and generations.
	UserData(ctx context.Context, userID string) (UserData, error)
	// EraseUserData deletes every record of userID in one transaction.
	EraseUserData(ctx context.Context, userID string) (Erasure, error)

	// TryLock takes the named lock, held across replicas, unless another
	// holder has it, in which case ok is false. unlock releases it.
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
}
