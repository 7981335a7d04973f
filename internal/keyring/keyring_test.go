package keyring_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/keyring"
)

func key(b byte) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune('a'+b)), 32)))
}

func TestRoundTrip(t *testing.T) {
	kr, err := keyring.Parse("k1:" + key(1))
	if err != nil {
		t.Fatal(err)
	}
	b := keyring.Binding{Table: "sessions", Column: "credential", RowID: "s1"}
	ct, err := kr.Encrypt([]byte("sso=abc"), b)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ct), "sso=abc") {
		t.Fatal("ciphertext contains the plaintext")
	}
	pt, err := kr.Decrypt(ct, b)
	if err != nil {
		t.Fatal(err)
	}
	if string(pt) != "sso=abc" {
		t.Fatalf("Decrypt = %q; want %q", pt, "sso=abc")
	}
}

func TestBindingMismatchFails(t *testing.T) {
	kr, _ := keyring.Parse(key(1))
	b := keyring.Binding{Table: "sessions", Column: "credential", RowID: "s1"}
	ct, _ := kr.Encrypt([]byte("secret"), b)
	for name, other := range map[string]keyring.Binding{
		"row":    {Table: "sessions", Column: "credential", RowID: "s2"},
		"column": {Table: "sessions", Column: "proxy_url", RowID: "s1"},
		"table":  {Table: "users", Column: "credential", RowID: "s1"},
	} {
		if _, err := kr.Decrypt(ct, other); err == nil {
			t.Errorf("%s: Decrypt with another binding succeeded", name)
		}
	}
}

func TestRotationKeepsOldKeysReadable(t *testing.T) {
	old, _ := keyring.Parse("old:" + key(1))
	b := keyring.Binding{Table: "t", Column: "c", RowID: "r"}
	ct, _ := old.Encrypt([]byte("x"), b)

	rotated, err := keyring.Parse("old:" + key(1) + ",new:" + key(2))
	if err != nil {
		t.Fatal(err)
	}
	if got := rotated.Newest(); got != "new" {
		t.Fatalf("Newest() = %q; want %q", got, "new")
	}
	if id, _ := rotated.KeyID(ct); id != "old" {
		t.Fatalf("KeyID(old ciphertext) = %q; want %q", id, "old")
	}
	if pt, err := rotated.Decrypt(ct, b); err != nil || string(pt) != "x" {
		t.Fatalf("Decrypt(old ciphertext) = %q, %v; want %q", pt, err, "x")
	}
	ct2, _ := rotated.Encrypt([]byte("y"), b)
	if id, _ := rotated.KeyID(ct2); id != "new" {
		t.Fatalf("KeyID(new ciphertext) = %q; want %q", id, "new")
	}
	if _, err := old.Decrypt(ct2, b); !errors.Is(err, keyring.ErrUnknownKey) {
		t.Fatalf("old keyring Decrypt(new ciphertext) error = %v; want ErrUnknownKey", err)
	}
}

func TestParseRejectsBadKeys(t *testing.T) {
	for name, text := range map[string]string{
		"short":     "k1:" + base64.StdEncoding.EncodeToString([]byte("short")),
		"not-b64":   "k1:!!!",
		"dup-id":    "a:" + key(1) + ",a:" + key(2),
		"no-id-two": key(1) + "," + key(2),
		"empty":     "",
	} {
		if _, err := keyring.Parse(text); err == nil {
			t.Errorf("%s: Parse(%q) succeeded; want an error", name, text)
		}
	}
}

func TestLoadOrCreateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grokproxy.db.key")
	kr, created, err := keyring.LoadOrCreateFile(path)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateFile = created %v, %v; want created", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("key file mode = %o; want 600", perm)
	}
	b := keyring.Binding{Table: "t", Column: "c", RowID: "r"}
	ct, _ := kr.Encrypt([]byte("z"), b)

	again, created, err := keyring.LoadOrCreateFile(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreateFile = created %v, %v; want loaded", created, err)
	}
	if pt, err := again.Decrypt(ct, b); err != nil || string(pt) != "z" {
		t.Fatalf("Decrypt after reload = %q, %v", pt, err)
	}
}

func TestDerive(t *testing.T) {
	parse := func(text string) *keyring.Keyring {
		t.Helper()
		kr, err := keyring.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}
	one := parse("k1:" + key(1))
	again := parse("k1:" + key(1))
	rotated := parse("k1:" + key(1) + ",k2:" + key(2))

	a := one.Derive("image-urls")
	if len(a) != keyring.KeyBytes {
		t.Fatalf("derived key is %d bytes; want %d", len(a), keyring.KeyBytes)
	}
	if string(a) != string(again.Derive("image-urls")) {
		t.Error("the same keyring derived two different keys")
	}
	if string(a) == string(one.Derive("conversations")) {
		t.Error("two purposes derived the same key")
	}
	if string(a) == string(rotated.Derive("image-urls")) {
		t.Error("a newer key did not change the derived key")
	}
	if raw, _ := base64.StdEncoding.DecodeString(key(1)); string(a) == string(raw) {
		t.Error("Derive returned the key itself")
	}
}
