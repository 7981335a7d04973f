package grokweb

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"sync"
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
	// StatsigSigner requests each value from an external signer service for each value
	// (Config.StatsigSignerURL) and caches it for an hour per method and
	// path.
	StatsigSigner = "signer"
)

// signerTTL is how long a value from the external signer is reused for
// the same method and path.
const signerTTL = time.Hour

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
	key   []byte        // verification key for StatsigComputed
	ext   *remoteSigner // for StatsigSigner
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
	case StatsigSigner:
		return s.ext.sign(method, path, now)
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

// remoteSigner requests x-statsig-id values from an external service. It posts
// {"method","path","environment":{"metaContent"}} and reads
// {"x-statsig-id": …}. Only values that decode to the 70-byte format are
// used. It is safe for concurrent use.
type remoteSigner struct {
	url         string
	metaContent string
	http        *http.Client

	mu    sync.Mutex // guards cache
	cache map[string]signed
}

type signed struct {
	value   string
	expires time.Time
}

// signTimeout bounds one call to the signer.
const signTimeout = 10 * time.Second

// sign returns a cached or fresh value, or "" when the signer fails. The
// request then goes without the header and upstream decides.
func (r *remoteSigner) sign(method, path string, now time.Time) string {
	if r == nil {
		return ""
	}
	key := method + " " + path
	r.mu.Lock()
	if v, ok := r.cache[key]; ok && now.Before(v.expires) {
		r.mu.Unlock()
		return v.value
	}
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
	defer cancel()
	v, err := r.fetch(ctx, method, path)
	if err != nil {
		return ""
	}
	r.mu.Lock()
	r.cache[key] = signed{value: v, expires: now.Add(signerTTL)}
	r.mu.Unlock()
	return v
}

func (r *remoteSigner) fetch(ctx context.Context, method, path string) (string, error) {
	body, _ := json.Marshal(map[string]any{
		"method": method, "path": path,
		"environment": map[string]string{"metaContent": r.metaContent},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("statsig signer responded with status %d", resp.StatusCode)
	}
	var out map[string]string
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return "", fmt.Errorf("decode statsig signer response: %w", err)
	}
	v := out["x-statsig-id"]
	if !validStatsig(v) {
		return "", fmt.Errorf("statsig signer value is not 70 bytes of base64")
	}
	return v, nil
}

// validStatsig reports whether v is base64 (padded or not) of 70 bytes.
func validStatsig(v string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(v); err == nil && len(b) == 70 {
			return true
		}
	}
	return false
}
