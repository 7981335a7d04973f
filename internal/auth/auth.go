// Package auth turns client API keys into principals.
//
// A gateway key is "gp_<key id>_<secret>" (see KeyPattern). The key id finds
// the stored row and the secret is checked against its bcrypt hash. Because
// bcrypt is slow on purpose, a verified key text is cached for
// Config.CacheTTL, keyed by an HMAC of the text under a per-process random
// key, so only the first request of a key pays for bcrypt. A wrong secret
// for a known key id is cached as rejected, and bcrypt runs under a bound of
// Config.MaxBcrypt concurrent checks, so bad keys cannot use up the CPU.
//
// Static keys from API_PASSWORD and ADMIN_API_KEYS bypass the store and are
// compared in constant time.
//
// Revocation reaches the cache of every replica through Run: a store poll
// every Config.RevocationPoll and, when SetRedis was called, a Redis
// pub/sub message on RevokedChannel.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
)

// Principal is the caller that an API key authenticates.
type Principal struct {
	UserID string
	KeyID  string // public key id of a stored key; empty for static keys
	Name   string // user name
	Role   string // store.RoleUser or store.RoleAdmin
	Admin  bool   // true for ADMIN_API_KEYS and for users with the admin role
	Static bool   // the key came from API_PASSWORD or ADMIN_API_KEYS

	// RateLimitPerMinute is the user's own limit, or the default when the
	// user has none. Zero or less means no limit.
	RateLimitPerMinute int
	// MaxConcurrent caps in-flight requests per key; 0 means no cap.
	MaxConcurrent int
	// Models lists the public model ids the caller may use; empty means all.
	Models []string
}

// Errors returned by Authenticate.
var (
	// ErrInvalidKey means the key is malformed, unknown, wrong, revoked or
	// expired. All these cases return the same error, so a caller learns
	// nothing about which keys exist.
	ErrInvalidKey = errors.New("invalid api key")
	// ErrBusy means every bcrypt slot stayed taken for the whole wait.
	ErrBusy = errors.New("api key verification busy")
	// ErrInactive means the key is valid but its user is inactive or
	// expired.
	ErrInactive = errors.New("user inactive or expired")
	// ErrRevoked is returned by RotateKey for a key that is revoked.
	ErrRevoked = errors.New("api key revoked")
)

// RevokedChannel is the Redis pub/sub channel that carries the public key
// id of each revoked or rotated key, and "user:" and the id of each
// changed user.
const RevokedChannel = "grokproxy:revoked"

// userMessagePrefix starts a RevokedChannel message that names a user.
// Key ids are hex, so the two kinds never collide.
const userMessagePrefix = "user:"

// Defaults applied by New to zero Config fields.
const (
	DefaultBcryptCost         = 12
	DefaultRateLimitPerMinute = 60
	DefaultCacheTTL           = 5 * time.Minute
	DefaultMaxBcrypt          = 2
	DefaultRevocationPoll     = 500 * time.Millisecond
)

// busyWait is how long Authenticate waits for a bcrypt slot before it
// returns ErrBusy.
const busyWait = 2 * time.Second

// Config sets up an Authenticator.
type Config struct {
	// StaticKeys are API_PASSWORD keys. Each acts as its own user, with
	// id "static-" plus the first 12 hex digits of the key's SHA-256, and
	// the default limits.
	StaticKeys []secret.Value
	// AdminKeys are ADMIN_API_KEYS keys; their principals are Admin.
	AdminKeys []secret.Value
	// BcryptCost is the cost of new key hashes; 0 means 12.
	BcryptCost int
	// DefaultRateLimitPerMinute applies to users without their own limit
	// and to static keys; 0 means 60.
	DefaultRateLimitPerMinute int
	// CacheTTL is how long a verified or rejected key text stays cached;
	// 0 means 5m. Changes to a user reach cached keys after at most this
	// long, unless ForgetUser is called.
	CacheTTL time.Duration
	// MaxBcrypt is the number of concurrent bcrypt checks; 0 means 2.
	MaxBcrypt int
	// RevocationPoll is the interval of Run's revocation poll; 0 means
	// 500ms.
	RevocationPoll time.Duration
}

func (c Config) withDefaults() Config {
	if c.BcryptCost == 0 {
		c.BcryptCost = DefaultBcryptCost
	}
	if c.DefaultRateLimitPerMinute == 0 {
		c.DefaultRateLimitPerMinute = DefaultRateLimitPerMinute
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.MaxBcrypt <= 0 {
		c.MaxBcrypt = DefaultMaxBcrypt
	}
	if c.RevocationPoll <= 0 {
		c.RevocationPoll = DefaultRevocationPoll
	}
	return c
}

// Authenticator checks API keys and manages stored keys. It is safe for
// concurrent use.
type Authenticator struct {
	cfg     Config
	st      store.Store
	now     func() time.Time
	log     *slog.Logger
	statics []staticKey
	// staticGatewayForm is set when a static key has the form of a
	// gateway key; otherwise such a key skips the static comparison.
	staticGatewayForm bool
	cache             *cache
	redis             *redis.Client

	slots    chan struct{} // one token per running bcrypt check
	busyWait time.Duration
	// compare checks a secret against its hash; tests wrap it to count
	// bcrypt runs.
	compare func(hash, secret []byte) error

	mu       sync.Mutex // guards the fields below
	flights  map[[sha256.Size]byte]*flight
	lastUsed map[string]time.Time // by store id of the key
}

// staticKey is one API_PASSWORD or ADMIN_API_KEYS entry.
type staticKey struct {
	digest    [sha256.Size]byte
	principal Principal
}

// flight is a verification in progress. Requests that carry the same key
// text wait for it instead of running bcrypt again.
type flight struct {
	done  chan struct{}
	entry *cacheEntry
	err   error
}

// New returns an Authenticator over the keys in st. It starts no
// goroutines; call Run to receive revocations and save last-used times.
func New(cfg Config, st store.Store, now func() time.Time, log *slog.Logger) *Authenticator {
	cfg = cfg.withDefaults()
	a := &Authenticator{
		cfg:      cfg,
		st:       st,
		now:      now,
		log:      log,
		cache:    newCache(),
		slots:    make(chan struct{}, cfg.MaxBcrypt),
		busyWait: busyWait,
		compare:  bcrypt.CompareHashAndPassword,
		flights:  make(map[[sha256.Size]byte]*flight),
		lastUsed: make(map[string]time.Time),
	}
	// Admin keys come first, so a key listed in both lists is an admin key.
	for _, k := range cfg.AdminKeys {
		a.addStatic(k, "admin-", store.RoleAdmin, true)
	}
	for _, k := range cfg.StaticKeys {
		a.addStatic(k, "static-", store.RoleUser, false)
	}
	return a
}

func (a *Authenticator) addStatic(k secret.Value, idPrefix, role string, admin bool) {
	if k.Empty() {
		return
	}
	d := sha256.Sum256([]byte(k.Reveal()))
	if _, _, ok := ParseKey(k.Reveal()); ok {
		a.staticGatewayForm = true
	}
	id := idPrefix + hex.EncodeToString(d[:])[:12]
	a.statics = append(a.statics, staticKey{digest: d, principal: Principal{
		UserID:             id,
		Name:               id,
		Role:               role,
		Admin:              admin,
		Static:             true,
		RateLimitPerMinute: a.cfg.DefaultRateLimitPerMinute,
	}})
}

// Authenticate returns the principal of an API key. It returns
// ErrInvalidKey, ErrInactive, ErrBusy, a context error, or a wrapped store
// error.
func (a *Authenticator) Authenticate(ctx context.Context, key string) (Principal, error) {
	keyID, secretText, ok := ParseKey(key)
	// Whether the comparison runs depends only on the form of the key
	// presented, which reveals nothing about the static keys.
	if !ok || a.staticGatewayForm {
		if p, ok := a.matchStatic(key); ok {
			return p, nil
		}
	}
	if !ok {
		return Principal{}, ErrInvalidKey
	}

	d := a.cache.digest(key)
	e, ok := a.cache.get(d, a.now())
	if !ok {
		var err error
		if e, err = a.verifyShared(ctx, d, keyID, secretText); err != nil {
			return Principal{}, err
		}
	}
	return a.verdict(e)
}

// matchStatic compares key with every static key in constant time. It
// visits all of them whatever matches, so timing reveals nothing about
// which key or how many bytes matched.
func (a *Authenticator) matchStatic(key string) (Principal, bool) {
	if len(a.statics) == 0 {
		return Principal{}, false
	}
	d := sha256.Sum256([]byte(key))
	found := -1
	for i := range a.statics {
		if subtle.ConstantTimeCompare(d[:], a.statics[i].digest[:]) == 1 && found < 0 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, false
	}
	return a.statics[found].principal, true
}

// verdict turns a cache entry into the result of Authenticate and records
// the key's use.
func (a *Authenticator) verdict(e *cacheEntry) (Principal, error) {
	now := a.now()
	switch {
	case e.rejected:
		return Principal{}, ErrInvalidKey
	case !e.keyExpires.IsZero() && !now.Before(e.keyExpires):
		return Principal{}, ErrInvalidKey
	case e.inactive:
		return Principal{}, ErrInactive
	case !e.userExpiry.IsZero() && !now.Before(e.userExpiry):
		return Principal{}, ErrInactive
	}

	a.mu.Lock()
	a.lastUsed[e.recordID] = now
	a.mu.Unlock()
	p := e.principal
	p.Models = slices.Clone(p.Models)
	return p, nil
}

// verifyShared runs verify once for concurrent requests with the same key
// text. A waiter whose leader was canceled runs its own verification.
func (a *Authenticator) verifyShared(ctx context.Context, d [sha256.Size]byte, keyID, secretText string) (*cacheEntry, error) {
	for {
		a.mu.Lock()
		f, waiting := a.flights[d]
		if !waiting {
			f = &flight{done: make(chan struct{})}
			a.flights[d] = f
		}
		a.mu.Unlock()

		if !waiting {
			// A leader that just finished stores its verdict before it
			// leaves the map, so the cache is worth a second look.
			if e, ok := a.cache.get(d, a.now()); ok {
				f.entry = e
			} else {
				f.entry, f.err = a.verify(ctx, d, keyID, secretText)
			}
			a.mu.Lock()
			delete(a.flights, d)
			a.mu.Unlock()
			close(f.done)
			return f.entry, f.err
		}

		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		leaderCanceled := errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)
		if leaderCanceled && ctx.Err() == nil {
			continue
		}
		return f.entry, f.err
	}
}

// verify looks the key up and checks its secret. A checked secret, right
// or wrong, is cached; keys that are unknown, revoked or expired are not,
// because finding that out costs no bcrypt.
func (a *Authenticator) verify(ctx context.Context, d [sha256.Size]byte, keyID, secretText string) (*cacheEntry, error) {
	k, err := a.st.APIKeyByKeyID(ctx, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidKey
	}
	if err != nil {
		return nil, fmt.Errorf("look up api key %q: %w", keyID, err)
	}
	end := keyEnd(k)
	if !end.IsZero() && !a.now().Before(end) {
		return nil, ErrInvalidKey
	}

	e := &cacheEntry{keyID: k.KeyID, userID: k.UserID, recordID: k.ID, keyExpires: end}
	err = a.checkSecret(ctx, k.SecretHash, secretText)
	switch {
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		e.rejected = true
	case err != nil:
		return nil, err
	default:
		if err := a.fillUser(ctx, e, k); err != nil {
			return nil, err
		}
	}
	e.until = a.now().Add(a.cfg.CacheTTL)
	a.cache.put(d, e, a.now())
	return e, nil
}

// fillUser sets the user's state and limits on a verified entry.
func (a *Authenticator) fillUser(ctx context.Context, e *cacheEntry, k store.APIKey) error {
	u, err := a.st.User(ctx, k.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return ErrInvalidKey
	}
	if err != nil {
		return fmt.Errorf("look up user %q of api key %q: %w", k.UserID, k.KeyID, err)
	}
	e.inactive = !u.Active
	e.userExpiry = u.ExpiresAt
	limit := a.cfg.DefaultRateLimitPerMinute
	if u.RateLimitPerMinute != nil {
		limit = *u.RateLimitPerMinute
	}
	e.principal = Principal{
		UserID:             u.ID,
		KeyID:              k.KeyID,
		Name:               u.Name,
		Role:               u.Role,
		Admin:              u.Role == store.RoleAdmin,
		RateLimitPerMinute: limit,
		MaxConcurrent:      u.MaxConcurrentPerKey,
		Models:             slices.Clone(u.Models),
	}
	return nil
}

// checkSecret runs bcrypt in one of the bounded slots. It returns ErrBusy
// when no slot frees up within busyWait.
func (a *Authenticator) checkSecret(ctx context.Context, hash []byte, secretText string) error {
	timer := time.NewTimer(a.busyWait)
	defer timer.Stop()
	select {
	case a.slots <- struct{}{}:
	case <-timer.C:
		return ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-a.slots }()

	err := a.compare(hash, []byte(secretText))
	if err != nil && !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return fmt.Errorf("check api key secret: %w", err)
	}
	return err
}

// keyEnd returns when a key stops being valid: the earlier of its
// revocation and its expiry, or zero when neither is set.
func keyEnd(k store.APIKey) time.Time {
	switch {
	case k.RevokedAt.IsZero():
		return k.ExpiresAt
	case k.ExpiresAt.IsZero() || k.RevokedAt.Before(k.ExpiresAt):
		return k.RevokedAt
	}
	return k.ExpiresAt
}
