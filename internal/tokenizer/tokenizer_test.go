package tokenizer_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/grokproxy/grokproxy/internal/tokenizer"
)

// The expected counts are those of the reference o200k_base encoder.
func TestCount(t *testing.T) {
	tests := []struct {
		name string
		text string
		want int
	}{
		{"empty", "", 0},
		{"hello world", "hello world", 2},
		{"sentence", "The quick brown fox jumps over the lazy dog.", 10},
		{"special marker counted as text", "<|endoftext|>", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokenizer.Count(tt.text); got != tt.want {
				t.Errorf("Count(%q) = %d; want %d", tt.text, got, tt.want)
			}
		})
	}
}

func TestCountDiffersFromByteEstimate(t *testing.T) {
	// Chinese text takes about one token per character, three bytes each:
	// a byte-length estimate is off by far more than a real encoder.
	text := strings.Repeat("你好世界", 25)
	got := tokenizer.Count(text)
	byBytes := (len(text) + 3) / 4
	if got <= 0 || got == byBytes {
		t.Fatalf("Count = %d, byte estimate %d; want a real token count", got, byBytes)
	}
}

func TestCountConcurrent(t *testing.T) {
	const text = "Concurrent counting must agree with a single count."
	want := tokenizer.Count(text)
	var wg sync.WaitGroup
	errs := make(chan int, 8)
	for range 8 {
		wg.Go(func() {
			if got := tokenizer.Count(text); got != want {
				errs <- got
			}
		})
	}
	wg.Wait()
	close(errs)
	for got := range errs {
		t.Errorf("concurrent Count = %d; want %d", got, want)
	}
}

func TestCountLargeTextTwice(t *testing.T) {
	text := strings.Repeat("Large prompts are remembered by digest. ", 2000)
	first := tokenizer.Count(text)
	// Seven tokens per sentence; the final space is a token of its own.
	if want := 7*2000 + 1; first != want {
		t.Fatalf("Count = %d; want %d", first, want)
	}
	if again := tokenizer.Count(text); again != first {
		t.Errorf("second Count = %d; want %d", again, first)
	}
	other := text + " One more sentence."
	if got := tokenizer.Count(other); got <= first {
		t.Errorf("Count of a longer text = %d; want more than %d", got, first)
	}
}
