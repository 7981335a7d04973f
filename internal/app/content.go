package app

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/store"
)

// recorder is what the content policy hands records to.
type recorder interface {
	Admit() error
	Record(g store.Generation)
}

// contentPolicy applies STORE_CONTENT and ENCRYPT_CONTENT to a generation
// record before it reaches the audit writer, and so before it can reach
// the spool file or the store.
type contentPolicy struct {
	next    recorder
	mode    string // full, redacted or none
	encrypt bool
	ring    *keyring.Keyring
}

func (p *contentPolicy) Admit() error { return p.next.Admit() }

func (p *contentPolicy) Record(g store.Generation) {
	if g.ID == "" {
		g.ID = newGenerationID()
	}
	switch p.mode {
	case "none":
		g.Prompt, g.Response, g.Reasoning = "", "", ""
	case "redacted":
		g.Prompt, g.Response, g.Reasoning = observe.Scrub(g.Prompt), observe.Scrub(g.Response), observe.Scrub(g.Reasoning)
	}
	if p.encrypt && p.mode != "none" {
		g.Prompt = p.seal(g.ID, "prompt", g.Prompt)
		g.Response = p.seal(g.ID, "response", g.Response)
		g.Reasoning = p.seal(g.ID, "reasoning", g.Reasoning)
		g.ContentCrypted = true
	}
	p.next.Record(g)
}

// seal encrypts one content column, bound to its row and column, and
// returns it hex-encoded so that it fits a text column. A failure stores
// nothing rather than the plain text.
func (p *contentPolicy) seal(id, column, text string) string {
	if text == "" {
		return ""
	}
	ct, err := p.ring.Encrypt([]byte(text), keyring.Binding{Table: "generations", Column: column, RowID: id})
	if err != nil {
		return ""
	}
	return hex.EncodeToString(ct)
}

// OpenContent reverses the content encryption of one column of g.
func OpenContent(ring *keyring.Keyring, g store.Generation, column, value string) (string, error) {
	if !g.ContentCrypted || value == "" {
		return value, nil
	}
	ct, err := hex.DecodeString(value)
	if err != nil {
		return "", err
	}
	pt, err := ring.Decrypt(ct, keyring.Binding{Table: "generations", Column: column, RowID: g.ID})
	return string(pt), err
}

func newGenerationID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "gen_" + hex.EncodeToString(b)
}

// openGeneration returns g with its content columns decrypted.
func openGeneration(ring *keyring.Keyring, g store.Generation) (store.Generation, error) {
	if !g.ContentCrypted {
		return g, nil
	}
	var err error
	out := g
	for _, col := range []struct {
		name string
		v    *string
	}{{"prompt", &out.Prompt}, {"response", &out.Response}, {"reasoning", &out.Reasoning}} {
		if *col.v, err = OpenContent(ring, g, col.name, *col.v); err != nil {
			return g, err
		}
	}
	out.ContentCrypted = false
	return out, nil
}
