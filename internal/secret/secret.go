// Package secret holds credentials so that they cannot reach a log line, an
// error string or an API response by accident.
package secret

import (
	"fmt"
	"io"
	"log/slog"
)

// Redacted is what every formatter prints in place of a secret.
const Redacted = "[redacted]"

// Value is a cookie, API key, password or token. fmt, slog and JSON print
// it as [redacted]; Reveal is the only way to read it. The zero Value is
// empty.
type Value struct{ raw string }

// New wraps raw.
func New(raw string) Value { return Value{raw: raw} }

// Reveal returns the secret text. Call it only where the text leaves the
// process on purpose: an upstream request, a hash, an encryption.
func (v Value) Reveal() string { return v.raw }

// Empty reports whether the secret has no text.
func (v Value) Empty() bool { return v.raw == "" }

// String returns [redacted].
func (Value) String() string { return Redacted }

// GoString returns [redacted], so %#v does not print the text either.
func (Value) GoString() string { return Redacted }

// Format prints [redacted] for every verb.
func (Value) Format(f fmt.State, _ rune) { io.WriteString(f, Redacted) }

// LogValue prints [redacted] in slog records.
func (Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON encodes the value as the string "[redacted]".
func (Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText encodes the value as [redacted].
func (Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
