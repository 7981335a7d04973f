package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/grokproxy/grokproxy/internal/store"
)

// mintAttempts bounds the retries when a new key id collides with a stored
// one. With 48 random bits a single collision is already unlikely.
const mintAttempts = 3

// CreateKey stores a new key for userID and returns it with its text. The
// text is shown once and is not stored. A zero expiresAt means no expiry.
func (a *Authenticator) CreateKey(ctx context.Context, userID, name string, expiresAt time.Time) (store.APIKey, string, error) {
	if _, err := a.st.User(ctx, userID); err != nil {
		return store.APIKey{}, "", fmt.Errorf("create api key for user %q: %w", userID, err)
	}
	return a.mint(ctx, store.APIKey{UserID: userID, Name: name, ExpiresAt: expiresAt})
}

// mint fills in a new key id, secret hash and row id on k and stores it.
func (a *Authenticator) mint(ctx context.Context, k store.APIKey) (store.APIKey, string, error) {
	for attempt := 1; ; attempt++ {
		text, keyID, secretText := NewKey()
		hash, err := bcrypt.GenerateFromPassword([]byte(secretText), a.cfg.BcryptCost)
		if err != nil {
			return store.APIKey{}, "", fmt.Errorf("hash api key secret: %w", err)
		}
		k.ID = uuid.NewString()
		k.KeyID = keyID
		k.Prefix = keyPrefix + keyID
		k.SecretHash = hash
		// Stores keep whole milliseconds; the same cut here keeps
		// endRotated's result the same on a repeated rotation.
		k.CreatedAt = a.now().UTC().Truncate(time.Millisecond)
		err = a.st.CreateAPIKey(ctx, &k)
		if errors.Is(err, store.ErrConflict) && attempt < mintAttempts && k.RotationRequestID == "" {
			continue
		}
		if err != nil {
			return store.APIKey{}, "", fmt.Errorf("store api key for user %q: %w", k.UserID, err)
		}
		return k, text, nil
	}
}

// RevokeKey revokes the stored key with id and drops it from the cache at
// once. Other replicas drop it when the Redis message or their next
// revocation poll arrives.
func (a *Authenticator) RevokeKey(ctx context.Context, id string) error {
	k, err := a.st.APIKey(ctx, id)
	if err != nil {
		return fmt.Errorf("revoke api key %q: %w", id, err)
	}
	if err := a.st.RevokeAPIKey(ctx, id, a.now().UTC()); err != nil {
		return fmt.Errorf("revoke api key %q: %w", id, err)
	}
	a.Forget(k.KeyID)
	a.publish(ctx, k.KeyID)
	return nil
}

// RotateKey mints a new key for the user of the key with id and makes the
// old key expire grace after the new one was created. A grace of zero or
// less ends the old key at once. The old key keeps an earlier expiry it
// already had.
//
// A rotation with a non-empty requestID is idempotent: a second call with
// the same id and requestID returns the key that the first call minted,
// with empty text, because the text is shown only once. A revoked key
// cannot be rotated, and the call returns ErrRevoked.
func (a *Authenticator) RotateKey(ctx context.Context, id, requestID string, grace time.Duration) (store.APIKey, string, error) {
	old, err := a.st.APIKey(ctx, id)
	if err != nil {
		return store.APIKey{}, "", fmt.Errorf("rotate api key %q: %w", id, err)
	}
	if requestID != "" {
		prev, err := a.st.RotatedKey(ctx, id, requestID)
		if err == nil {
			return prev, "", a.endRotated(ctx, old, prev, grace)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return store.APIKey{}, "", fmt.Errorf("find rotation of api key %q: %w", id, err)
		}
	}
	if !old.RevokedAt.IsZero() {
		return store.APIKey{}, "", fmt.Errorf("rotate api key %q: %w", id, ErrRevoked)
	}

	next := store.APIKey{UserID: old.UserID, Name: old.Name, RotatedFrom: old.ID, RotationRequestID: requestID}
	if old.ExpiresAt.After(a.now()) {
		next.ExpiresAt = old.ExpiresAt
	}
	created, text, err := a.mint(ctx, next)
	if errors.Is(err, store.ErrConflict) && requestID != "" {
		// Another replica rotated with the same request id first.
		prev, ferr := a.st.RotatedKey(ctx, id, requestID)
		if ferr != nil {
			return store.APIKey{}, "", fmt.Errorf("find rotation of api key %q: %w", id, ferr)
		}
		return prev, "", a.endRotated(ctx, old, prev, grace)
	}
	if err != nil {
		return store.APIKey{}, "", fmt.Errorf("rotate api key %q: %w", id, err)
	}
	return created, text, a.endRotated(ctx, old, created, grace)
}

// endRotated sets the old key's expiry to grace after its successor was
// created, unless it already ends sooner. Deriving the time from the
// successor keeps a repeated rotation from moving it.
func (a *Authenticator) endRotated(ctx context.Context, old, successor store.APIKey, grace time.Duration) error {
	at := successor.CreatedAt.Add(max(grace, 0)).UTC()
	if !old.ExpiresAt.IsZero() && !old.ExpiresAt.After(at) {
		return nil
	}
	if err := a.st.SetAPIKeyExpiry(ctx, old.ID, at); err != nil {
		return fmt.Errorf("set expiry of rotated api key %q: %w", old.ID, err)
	}
	a.cache.setKeyExpiry(old.KeyID, at)
	a.publish(ctx, old.KeyID)
	return nil
}

// Forget drops the cached verdicts on the key with the public key id
// keyID, so its next request is checked against the store.
func (a *Authenticator) Forget(keyID string) {
	a.cache.forgetKey(keyID)
}

// ForgetUser drops the cached verdicts on every key of userID, here and,
// when SetRedis was called, on every replica. Call it after changing a
// user, so the change applies before CacheTTL runs out.
func (a *Authenticator) ForgetUser(userID string) {
	a.cache.forgetUser(userID)
	if a.redis == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	a.publish(ctx, userMessagePrefix+userID)
}
