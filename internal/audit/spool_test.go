package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

func testRecord(i int) store.Generation {
	return store.Generation{
		ID:               fmt.Sprintf("gen_%04d", i),
		RequestID:        "req_1",
		UserID:           "user_1",
		KeyID:            "key_1",
		SessionID:        "ses_1",
		ConversationID:   "conv_1",
		Provider:         store.ProviderGrok,
		Model:            "grok-4",
		Prompt:           "hello",
		Response:         "world",
		Reasoning:        "because",
		FinishReason:     "stop",
		PromptTokens:     3,
		CompletionTokens: 4,
		ReasoningTokens:  5,
		TokensEstimated:  true,
		Status:           200,
		ErrorType:        "rate_limited",
		Attempts:         []store.Attempt{{SessionID: "ses_0", Outcome: "rate_limited", Status: 429, LatencyMS: 12}},
		LatencyMS:        900,
		FirstTokenMS:     120,
		ClientIP:         "127.0.0.1",
		Stream:           true,
		CreatedAt:        time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.UTC),
		ContentCrypted:   true,
	}
}

func openTestSpool(t *testing.T, path string) *spool {
	t.Helper()
	s, err := openSpool(path, 1<<20)
	if err != nil {
		t.Fatalf("open spool: %v", err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

func appendRecords(t *testing.T, s *spool, gs ...store.Generation) {
	t.Helper()
	var frames [][]byte
	for _, g := range gs {
		fr, err := encodeFrame(g)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		frames = append(frames, fr)
	}
	if err := s.append(frames); err != nil {
		t.Fatalf("append: %v", err)
	}
}

func TestSpoolRoundTripKeepsEveryField(t *testing.T) {
	s := openTestSpool(t, filepath.Join(t.TempDir(), "spool"))
	want := testRecord(1)
	want.Prompt = "\xff\x00\xfe ciphertext" // not valid UTF-8, as ciphertext may be
	appendRecords(t, s, want)

	got, end, frames, err := s.next(10)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	if frames != 1 || end != s.size {
		t.Fatalf("next read %d frames up to %d; want 1 up to %d", frames, end, s.size)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestSpoolOpenCutsTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	s := openTestSpool(t, path)
	appendRecords(t, s, testRecord(1), testRecord(2))
	whole := s.size
	s.close()

	fr, _ := encodeFrame(testRecord(3))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(fr[:len(fr)/2])
	f.Close()

	s = openTestSpool(t, path)
	if s.records != 2 {
		t.Errorf("records = %d; want 2", s.records)
	}
	if s.size != whole {
		t.Errorf("size = %d; want %d", s.size, whole)
	}
	info, _ := os.Stat(path)
	if info.Size() != whole {
		t.Errorf("file size = %d; want %d", info.Size(), whole)
	}
}

func TestSpoolOpenCutsZeroFilledTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	s := openTestSpool(t, path)
	appendRecords(t, s, testRecord(1))
	whole := s.size
	s.close()

	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(make([]byte, 4096))
	f.Close()

	s = openTestSpool(t, path)
	if s.records != 1 || s.size != whole {
		t.Errorf("records, size = %d, %d; want 1, %d", s.records, s.size, whole)
	}
}

func TestSpoolOpenCutsBadLastFrame(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	s := openTestSpool(t, path)
	appendRecords(t, s, testRecord(1))
	first := s.size
	appendRecords(t, s, testRecord(2))
	s.close()
	flipByte(t, path, first+frameHeaderBytes+3)

	s = openTestSpool(t, path)
	if s.records != 1 || s.size != first {
		t.Errorf("records, size = %d, %d; want 1, %d", s.records, s.size, first)
	}
}

func TestSpoolNextSkipsBadMiddleFrame(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	s := openTestSpool(t, path)
	appendRecords(t, s, testRecord(1))
	first := s.size
	appendRecords(t, s, testRecord(2), testRecord(3))
	s.close()
	flipByte(t, path, first+frameHeaderBytes+3)

	s = openTestSpool(t, path)
	if s.records != 3 {
		t.Fatalf("records = %d; want 3", s.records)
	}
	got, _, frames, err := s.next(10)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	if frames != 3 {
		t.Errorf("frames = %d; want 3", frames)
	}
	if len(got) != 2 || got[0].ID != testRecord(1).ID || got[1].ID != testRecord(3).ID {
		t.Errorf("records = %v; want ids %q and %q", ids(got), testRecord(1).ID, testRecord(3).ID)
	}
}

func TestSpoolCommitEmptiesFileAtEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	s := openTestSpool(t, path)
	appendRecords(t, s, testRecord(1), testRecord(2), testRecord(3))

	got, end, frames, _ := s.next(2)
	if len(got) != 2 {
		t.Fatalf("next(2) returned %d records", len(got))
	}
	if err := s.commit(end, frames); err != nil {
		t.Fatal(err)
	}
	if s.pending() != 1 || s.size == 0 {
		t.Fatalf("after a partial commit: pending %d, size %d; want 1 and the file kept", s.pending(), s.size)
	}

	got, end, frames, _ = s.next(2)
	if len(got) != 1 || got[0].ID != testRecord(3).ID {
		t.Fatalf("second next = %v; want %q", ids(got), testRecord(3).ID)
	}
	if err := s.commit(end, frames); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(path)
	if s.size != 0 || s.pending() != 0 || info.Size() != 0 {
		t.Errorf("after the last commit: size %d, pending %d, file %d; want all 0", s.size, s.pending(), info.Size())
	}
}

func TestSpoolRewriteKeepsReplayOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	s := openTestSpool(t, path)
	appendRecords(t, s, testRecord(1), testRecord(2), testRecord(3), testRecord(4))
	_, end, frames, _ := s.next(2)
	s.commit(end, frames)

	drop := testRecord(2).ID
	dropPending := testRecord(3).ID
	err := s.rewrite(func(fr frame, committed bool) bool {
		g, _ := decodeRecord(fr.payload)
		return g.ID != drop && g.ID != dropPending
	})
	if err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	if s.records != 2 || s.replayed != 1 || s.pending() != 1 {
		t.Fatalf("records %d, replayed %d; want 2 and 1", s.records, s.replayed)
	}
	got, _, _, _ := s.next(10)
	if len(got) != 1 || got[0].ID != testRecord(4).ID {
		t.Errorf("pending after rewrite = %v; want %q", ids(got), testRecord(4).ID)
	}

	s.close()
	s = openTestSpool(t, path)
	if s.records != 2 {
		t.Errorf("records after reopen = %d; want 2", s.records)
	}
}

func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, at)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func ids(gs []store.Generation) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.ID
	}
	return out
}
