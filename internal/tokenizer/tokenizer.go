// Package tokenizer counts tokens with the o200k_base encoding, for
// upstreams that report no usage. The vocabulary is embedded in the
// binary, so counting never reaches the network.
package tokenizer

import (
	"crypto/sha256"
	"sync"

	tiktoken "github.com/pkoukk/tiktoken-go"
	loader "github.com/pkoukk/tiktoken-go-loader"
)

// Encoding is the name of the encoding Count uses.
const Encoding = "o200k_base"

// load parses the embedded vocabulary once, on the first count. It takes
// a few hundred milliseconds and about 25 MB of heap (measured on a 2-core
// x86-64 machine), and Warm moves that cost to start-up.
var load = sync.OnceValues(func() (*tiktoken.Tiktoken, error) {
	// NOTE: SetBpeLoader changes a package variable of the library. Only
	// this package calls it, and always with the offline loader, so no
	// vocabulary is ever downloaded.
	tiktoken.SetBpeLoader(loader.NewOfflineLoader())
	return tiktoken.GetEncoding(Encoding)
})

// Warm loads the vocabulary now rather than on the first Count. It
// reports an error only when the embedded vocabulary is unreadable.
func Warm() error {
	_, err := load()
	return err
}

// Count returns the number of o200k_base tokens in text. Special-token
// markers such as "<|endoftext|>" are counted as plain text, as they are
// when they appear inside a message. It is safe for concurrent use.
func Count(text string) int {
	if text == "" {
		return 0
	}
	enc, err := load()
	if err != nil {
		// The vocabulary is part of the binary, so only a broken build gets
		// here. Fall back to the usual byte estimate.
		return (len(text) + 3) / 4
	}
	if len(text) < memoMinBytes {
		return len(enc.EncodeOrdinary(text))
	}
	key := sha256.Sum256([]byte(text))
	if n, ok := memo.get(key); ok {
		return n
	}
	n := len(enc.EncodeOrdinary(text))
	memo.put(key, n)
	return n
}

// memoMinBytes is the text size from which counts are remembered. Encoding
// runs at a few MB per second, and a request's prompt is counted more than
// once (response usage, audit record), so large texts are counted once.
const memoMinBytes = 64 << 10

// memoEntries bounds the remembered counts. A full table is emptied.
const memoEntries = 256

var memo = &countMemo{counts: make(map[[sha256.Size]byte]int)}

// countMemo remembers token counts of large texts by their SHA-256.
type countMemo struct {
	mu     sync.Mutex // guards counts
	counts map[[sha256.Size]byte]int
}

func (m *countMemo) get(key [sha256.Size]byte) (int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.counts[key]
	return n, ok
}

func (m *countMemo) put(key [sha256.Size]byte, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.counts) >= memoEntries {
		clear(m.counts)
	}
	m.counts[key] = n
}
