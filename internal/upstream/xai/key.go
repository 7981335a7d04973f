package xai

import (
	"errors"
	"strings"
)

// maxKeyBytes bounds an API key. Real keys are about 90 bytes.
const maxKeyBytes = 512

// ParseKey checks the text of an API key and returns it trimmed. It
// accepts "Bearer <key>" too. Errors never quote the key.
func ParseKey(text string) (string, error) {
	key := strings.TrimSpace(text)
	if k, ok := strings.CutPrefix(key, "Bearer "); ok {
		key = strings.TrimSpace(k)
	}
	switch {
	case key == "":
		return "", errors.New("the API key is empty")
	case len(key) > maxKeyBytes:
		return "", errors.New("the API key is longer than 512 bytes")
	case strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		return "", errors.New("the API key contains spaces or characters outside printable ASCII")
	}
	return key, nil
}
