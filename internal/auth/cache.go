package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// maxCacheEntries bounds the verification cache, so a flood of distinct
// wrong secrets for a known key id cannot grow it without limit.
const maxCacheEntries = 100_000

// cacheEntry is the verdict on one key text.
type cacheEntry struct {
	keyID    string // public key id of the key text
	userID   string
	rejected bool // the secret did not match the stored hash
	inactive bool // the secret matched, but the user is inactive or expired

	principal  Principal // set when neither rejected nor inactive
	recordID   string    // store id of the key, for last-used times
	keyExpires time.Time // zero when the key has no expiry
	userExpiry time.Time // zero when the user has no expiry
	until      time.Time // end of the cache entry's life
}

// cache maps a keyed digest of each key text, SHA-256 over a random
// per-process salt and the text, to the verdict on it. The map never holds
// key text or a digest that could be checked offline against a guess, and
// the digests never leave the process, so the length extension that such a
// prefix construction allows gives nothing away. It costs two SHA-256
// blocks for a key's 56 bytes, where an HMAC costs five.
type cache struct {
	salt [32]byte

	mu      sync.RWMutex // guards the fields below
	entries map[[sha256.Size]byte]*cacheEntry
	byKeyID map[string]map[[sha256.Size]byte]struct{}
	byUser  map[string]map[[sha256.Size]byte]struct{}
}

func newCache() *cache {
	c := &cache{
		entries: make(map[[sha256.Size]byte]*cacheEntry),
		byKeyID: make(map[string]map[[sha256.Size]byte]struct{}),
		byUser:  make(map[string]map[[sha256.Size]byte]struct{}),
	}
	rand.Read(c.salt[:])
	return c
}

// digest returns the map key of a key text.
func (c *cache) digest(text string) [sha256.Size]byte {
	var buf [128]byte // on the stack for texts of up to 96 bytes
	return sha256.Sum256(append(append(buf[:0], c.salt[:]...), text...))
}

// get returns the live entry for d. An entry past its life is reported
// as missing and left for put or sweep to remove.
func (c *cache) get(d [sha256.Size]byte, now time.Time) (*cacheEntry, bool) {
	c.mu.RLock()
	e, ok := c.entries[d]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e, true
}

// put stores e under d. When the cache is full it first drops expired
// entries, then arbitrary ones.
func (c *cache) put(d [sha256.Size]byte, e *cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[d]; !ok && len(c.entries) >= maxCacheEntries {
		c.sweepLocked(now)
		for victim := range c.entries {
			if len(c.entries) < maxCacheEntries {
				break
			}
			c.deleteLocked(victim)
		}
	}
	c.deleteLocked(d)
	c.entries[d] = e
	addIndex(c.byKeyID, e.keyID, d)
	addIndex(c.byUser, e.userID, d)
}

// forgetKey drops every entry of a public key id.
func (c *cache) forgetKey(keyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d := range c.byKeyID[keyID] {
		c.deleteLocked(d)
	}
}

// forgetUser drops every entry of a user.
func (c *cache) forgetUser(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d := range c.byUser[userID] {
		c.deleteLocked(d)
	}
}

// setKeyExpiry records a new expiry of a key in its cached entries.
func (c *cache) setKeyExpiry(keyID string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d := range c.byKeyID[keyID] {
		e := *c.entries[d]
		e.keyExpires = at
		c.entries[d] = &e
	}
}

// sweep drops the entries past their life.
func (c *cache) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now)
}

func (c *cache) sweepLocked(now time.Time) {
	for d, e := range c.entries {
		if !now.Before(e.until) {
			c.deleteLocked(d)
		}
	}
}

func (c *cache) deleteLocked(d [sha256.Size]byte) {
	e, ok := c.entries[d]
	if !ok {
		return
	}
	delete(c.entries, d)
	removeIndex(c.byKeyID, e.keyID, d)
	removeIndex(c.byUser, e.userID, d)
}

func addIndex(idx map[string]map[[sha256.Size]byte]struct{}, k string, d [sha256.Size]byte) {
	if k == "" {
		return
	}
	set := idx[k]
	if set == nil {
		set = make(map[[sha256.Size]byte]struct{})
		idx[k] = set
	}
	set[d] = struct{}{}
}

func removeIndex(idx map[string]map[[sha256.Size]byte]struct{}, k string, d [sha256.Size]byte) {
	set := idx[k]
	delete(set, d)
	if len(set) == 0 {
		delete(idx, k)
	}
}
