package auth

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strings"
)

// Key text is "gp_" + KeyIDLength lowercase hex characters + "_" +
// SecretLength base62 characters. The key id is public and finds the stored
// row; only the secret's bcrypt hash is stored.
const (
	KeyIDLength  = 12
	SecretLength = 40
	keyPrefix    = "gp_"
)

// KeyPattern matches the text of a gateway API key. Submatch 1 is the key
// id and submatch 2 the secret.
var KeyPattern = regexp.MustCompile(`^gp_([0-9a-f]{12})_([0-9A-Za-z]{40})$`)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewKey returns the text of a new API key with its key id and secret, all
// drawn from crypto/rand.
func NewKey() (text, keyID, secret string) {
	id := make([]byte, KeyIDLength/2)
	rand.Read(id) // crypto/rand.Read never returns an error; it panics instead
	keyID = hex.EncodeToString(id)
	secret = randomBase62(SecretLength)
	return keyPrefix + keyID + "_" + secret, keyID, secret
}

// ParseKey splits key text into its key id and secret. ok is false when
// the text does not match KeyPattern.
func ParseKey(text string) (keyID, secret string, ok bool) {
	if len(text) != len(keyPrefix)+KeyIDLength+1+SecretLength {
		return "", "", false
	}
	// The same check as KeyPattern, written out because it runs on every
	// request.
	keyID, secret = text[len(keyPrefix):len(keyPrefix)+KeyIDLength], text[len(keyPrefix)+KeyIDLength+1:]
	if text[:len(keyPrefix)] != keyPrefix || text[len(keyPrefix)+KeyIDLength] != '_' ||
		!allIn(keyID, "0123456789abcdef") || !allIn(secret, base62) {
		return "", "", false
	}
	return keyID, secret, true
}

// allIn reports whether every byte of s is one of chars.
func allIn(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(chars, s[i]) < 0 {
			return false
		}
	}
	return true
}

// randomBase62 returns n characters drawn uniformly from base62. Bytes of
// 248 and over are discarded, because 248 is the largest multiple of 62
// that fits a byte and keeping them would favor the first characters.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4)
	for len(out) < n {
		rand.Read(buf)
		for _, b := range buf {
			if b >= 248 {
				continue
			}
			out = append(out, base62[b%62])
			if len(out) == n {
				break
			}
		}
	}
	return string(out)
}
