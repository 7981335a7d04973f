package grokweb

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/big"
	"strconv"
	"time"
)

// x-statsig-id strategies, the values of Config.StatsigMode.
const (
	// StatsigComputed signs each request locally in the web app's 70-byte
	// format.
	StatsigComputed = "computed"
	// StatsigFixed sends Config.StatsigValue, captured from a browser, as is.
	StatsigFixed = "fixed"
	// StatsigFallback sends the base64 "x1:TypeError…" text that the web
	// app's script sends when its signer fails. Many clients use it.
	StatsigFallback = "fallback"
	// StatsigNone sends no x-statsig-id header.
	StatsigNone = "none"
)

// statsigEpoch is the zero of the signature's timestamp (2023-05-01
// 07:00 UTC, 1682924400 in Unix seconds).
const statsigEpoch = 1682924400

// statsigKeyBytes is the length of the verification key that the web
// page publishes in its grok-site-verification meta tag.
const statsigKeyBytes = 48

// signer produces x-statsig-id values. It is safe for concurrent use.
type signer struct {
	mode  string
	fixed string
	key   []byte // verification key for StatsigComputed
}

func newSigner(mode, value string) signer {
	s := signer{mode: mode, fixed: value}
	if mode != StatsigComputed {
		return s
	}
	key, err := decodeStatsigKey(value)
	if err != nil {
		// Config.Validate reports this. The random key still gives
		// values of the right shape for servers that check only that.
		key = make([]byte, statsigKeyBytes)
		rand.Read(key)
	}
	s.key = key
	return s
}

func decodeStatsigKey(value string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		key, err := enc.DecodeString(value)
		if err == nil && len(key) == statsigKeyBytes {
			return key, nil
		}
	}
	return nil, fmt.Errorf("statsig value must be the base64 of a %d-byte verification key", statsigKeyBytes)
}

// sign returns the header value for a request, or "" to send none.
func (s signer) sign(method, path string, now time.Time) string {
	switch s.mode {
	case StatsigNone:
		return ""
	case StatsigFixed:
		return s.fixed
	case StatsigFallback:
		return fallbackStatsig()
	}
	return computeStatsig(s.key, method, path, now)
}

// computeStatsig builds the 70-byte signature: a random mask byte, then
// the verification key, the seconds since statsigEpoch (uint32 little
// endian), the first 16 bytes of SHA-256 over "METHOD!path!seconds"
// followed by a fixed salt, and the format byte 3. Every byte after the
// mask is XORed with it, and the result is base64 without padding.
//
// NOTE: the web app also hashes a fingerprint derived from an animation in
// its page script. This client hashes an empty fingerprint, so grok.com
// may reject the value where it checks more than the format.
func computeStatsig(key []byte, method, path string, now time.Time) string {
	secs := uint32(now.Unix() - statsigEpoch)
	sum := sha256.Sum256([]byte(method + "!" + path + "!" + strconv.FormatUint(uint64(secs), 10) + "obfiowerehiring"))

	buf := make([]byte, 0, 1+statsigKeyBytes+4+16+1)
	var mask [1]byte
	rand.Read(mask[:])
	buf = append(buf, mask[0])
	buf = append(buf, key...)
	buf = binary.LittleEndian.AppendUint32(buf, secs)
	buf = append(buf, sum[:16]...)
	buf = append(buf, 3)
	for i := 1; i < len(buf); i++ {
		buf[i] ^= mask[0]
	}
	return base64.RawStdEncoding.EncodeToString(buf)
}

func fallbackStatsig() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 10)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(letters))))
		b[i] = letters[n.Int64()]
	}
	text := "x1:TypeError: Cannot read properties of undefined (reading '" + string(b) + "')"
	return base64.StdEncoding.EncodeToString([]byte(text))
}
