// Package keyring encrypts secrets at rest with AES-256-GCM. A keyring holds
// several keys, each with an id, so keys can be rotated: new writes use the
// newest key and old ciphertexts stay readable until they are re-encrypted.
//
// Each ciphertext is bound to where it is stored (table, column and row id)
// through GCM's additional data, so a value copied to another row or column
// does not decrypt.
package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeyBytes is the length of an AES-256 key.
const KeyBytes = 32

// version tags the ciphertext layout: "v1:" + key id + ":" + nonce + sealed.
const version = "v1:"

// ErrUnknownKey is returned when a ciphertext names a key id the keyring
// does not hold.
var ErrUnknownKey = errors.New("unknown encryption key id")

// Keyring is a set of AES-256-GCM keys. It is safe for concurrent use.
type Keyring struct {
	keys      map[string]cipher.AEAD
	newest    string
	newestRaw []byte // key material of newest, for Derive
}

// Parse reads a keyring from its text form: comma-separated entries of
// "ID:BASE64KEY", where the last entry is the newest. A single entry
// without an id ("BASE64KEY") gets the id "k1". Each key decodes (standard
// or URL base64, padded or not) to 32 bytes.
func Parse(text string) (*Keyring, error) {
	kr := &Keyring{keys: make(map[string]cipher.AEAD)}
	entries := strings.Split(strings.TrimSpace(text), ",")
	for i, entry := range entries {
		entry = strings.TrimSpace(entry)
		id, encoded, found := strings.Cut(entry, ":")
		if !found {
			if len(entries) > 1 {
				return nil, fmt.Errorf("key entry %d has no id: use ID:BASE64KEY", i+1)
			}
			id, encoded = "k1", entry
		}
		if id == "" || strings.ContainsAny(id, ": ") {
			return nil, fmt.Errorf("key entry %d has an invalid id %q", i+1, id)
		}
		raw, err := decodeKey(encoded)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", id, err)
		}
		if _, dup := kr.keys[id]; dup {
			return nil, fmt.Errorf("key id %q appears twice", id)
		}
		aead, err := newAEAD(raw)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", id, err)
		}
		kr.keys[id] = aead
		kr.newest, kr.newestRaw = id, raw
	}
	return kr, nil
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding,
	} {
		if raw, err := enc.DecodeString(s); err == nil {
			if len(raw) != KeyBytes {
				return nil, fmt.Errorf("key is %d bytes; want %d", len(raw), KeyBytes)
			}
			return raw, nil
		}
	}
	return nil, errors.New("key is not valid base64")
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Generate returns the text form of a new keyring with one random key.
func Generate() string {
	key := make([]byte, KeyBytes)
	rand.Read(key)
	return "k1:" + base64.StdEncoding.EncodeToString(key)
}

// LoadOrCreateFile reads a keyring from path, or writes a new one there with
// mode 0600 when the file does not exist. created reports the latter.
func LoadOrCreateFile(path string) (kr *Keyring, created bool, err error) {
	text, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("create key file %q: %w", path, err)
		}
		text = []byte(Generate() + "\n")
		if _, err := f.Write(text); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("write key file %q: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, false, fmt.Errorf("write key file %q: %w", path, err)
		}
		created = true
	} else if err != nil {
		return nil, false, fmt.Errorf("read key file %q: %w", path, err)
	}
	kr, err = Parse(string(text))
	if err != nil {
		return nil, false, fmt.Errorf("key file %q: %w", path, err)
	}
	return kr, created, nil
}

// Newest returns the id of the key used for new ciphertexts.
func (k *Keyring) Newest() string { return k.newest }

// Derive returns a 32-byte key for purpose (a fixed label such as
// "image-urls"), derived with HKDF-SHA256 from the newest key. Every
// replica that holds the same keyring derives the same key. Adding a newer
// key changes it, so whatever was signed with the old one stops verifying.
func (k *Keyring) Derive(purpose string) []byte {
	key, err := hkdf.Key(sha256.New, k.newestRaw, nil, "grokproxy "+purpose, KeyBytes)
	if err != nil {
		panic(err) // only for an output longer than HKDF allows
	}
	return key
}

// Binding names where a ciphertext is stored. It is authenticated but not
// encrypted.
type Binding struct {
	Table  string
	Column string
	RowID  string
}

func (b Binding) additionalData() []byte {
	return []byte(b.Table + "\x00" + b.Column + "\x00" + b.RowID)
}

// Encrypt seals plaintext with the newest key for the place b.
func (k *Keyring) Encrypt(plaintext []byte, b Binding) ([]byte, error) {
	aead := k.keys[k.newest]
	out := make([]byte, 0, len(version)+len(k.newest)+1+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out = append(out, version...)
	out = append(out, k.newest...)
	out = append(out, ':')
	nonceAt := len(out)
	out = out[:nonceAt+aead.NonceSize()]
	if _, err := rand.Read(out[nonceAt:]); err != nil {
		return nil, fmt.Errorf("read nonce: %w", err)
	}
	return aead.Seal(out, out[nonceAt:], plaintext, b.additionalData()), nil
}

// Decrypt opens a ciphertext made by Encrypt for the same place b.
func (k *Keyring) Decrypt(ciphertext []byte, b Binding) ([]byte, error) {
	id, aead, rest, err := k.split(ciphertext)
	if err != nil {
		return nil, err
	}
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("ciphertext is too short")
	}
	nonce, sealed := rest[:aead.NonceSize()], rest[aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, sealed, b.additionalData())
	if err != nil {
		return nil, fmt.Errorf("decrypt %s.%s of %q with key %q: authentication failed", b.Table, b.Column, b.RowID, id)
	}
	return plain, nil
}

// KeyID returns the id of the key that sealed ciphertext.
func (k *Keyring) KeyID(ciphertext []byte) (string, error) {
	id, _, _, err := k.split(ciphertext)
	return id, err
}

func (k *Keyring) split(ciphertext []byte) (string, cipher.AEAD, []byte, error) {
	if !bytes.HasPrefix(ciphertext, []byte(version)) {
		return "", nil, nil, errors.New("ciphertext has no version tag")
	}
	rest := ciphertext[len(version):]
	i := bytes.IndexByte(rest, ':')
	if i <= 0 {
		return "", nil, nil, errors.New("ciphertext has no key id")
	}
	id := string(rest[:i])
	aead, ok := k.keys[id]
	if !ok {
		return id, nil, nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	return id, aead, rest[i+1:], nil
}
