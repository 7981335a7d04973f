package grokweb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFrames(t *testing.T) {
	tests := []struct {
		name  string
		line  string
		check func(t *testing.T, f frame)
	}{
		{"conversation", `{"result":{"conversation":{"conversationId":"c-1","title":"New conversation"}}}`,
			func(t *testing.T, f frame) {
				if f.Conversation == nil || f.Conversation.ConversationID != "c-1" {
					t.Errorf("conversation = %+v; want id c-1", f.Conversation)
				}
			}},
		{"user response", `{"result":{"response":{"userResponse":{"responseId":"u-1","sender":"human"},"responseId":"u-1"}}}`,
			func(t *testing.T, f frame) {
				if f.Response == nil || f.Response.UserResponse == nil || f.Response.UserResponse.ResponseID != "u-1" {
					t.Errorf("response = %+v; want user response u-1", f.Response)
				}
			}},
		{"answer token", `{"result":{"response":{"token":"Hi","isThinking":false,"messageTag":"final","responseId":"m-1"}}}`,
			func(t *testing.T, f frame) {
				r := f.Response
				if r == nil || r.Token == nil || *r.Token != "Hi" || r.IsThinking || r.MessageTag != "final" {
					t.Errorf("response = %+v; want answer token Hi", r)
				}
			}},
		{"thinking token", `{"result":{"response":{"token":"hmm","isThinking":true,"messageTag":"summary","responseId":"m-1"}}}`,
			func(t *testing.T, f frame) {
				if r := f.Response; r == nil || !r.IsThinking || *r.Token != "hmm" {
					t.Errorf("response = %+v; want thinking token", r)
				}
			}},
		{"soft stop", `{"result":{"response":{"token":"","isSoftStop":true,"responseId":"m-1"}}}`,
			func(t *testing.T, f frame) {
				if r := f.Response; r == nil || !r.IsSoftStop {
					t.Errorf("response = %+v; want soft stop", r)
				}
			}},
		{"final metadata", `{"result":{"response":{"finalMetadata":{"followUpSuggestions":[]},"responseId":"m-1"}}}`,
			func(t *testing.T, f frame) {
				if r := f.Response; r == nil || len(r.FinalMetadata) == 0 {
					t.Errorf("response = %+v; want final metadata", r)
				}
			}},
		{"model response", `{"result":{"response":{"modelResponse":{"responseId":"m-1","message":"Hi","requestMetadata":{"model":"grok-4-auto"},"generatedImageUrls":["a.jpg"]}}}}`,
			func(t *testing.T, f frame) {
				mr := f.Response.ModelResponse
				if mr == nil || mr.Message != "Hi" || mr.RequestMetadata.Model != "grok-4-auto" || len(mr.GeneratedImageURLs) != 1 {
					t.Errorf("model response = %+v", mr)
				}
			}},
		{"image card", `{"result":{"response":{"cardAttachment":{"jsonData":"{\"id\":\"img1\"}"},"responseId":"m"}}}`,
			func(t *testing.T, f frame) {
				if ca := f.Response.CardAttachment; ca == nil || ca.JSONData != `{"id":"img1"}` {
					t.Errorf("card = %+v", ca)
				}
			}},
		{"streaming image", `{"result":{"response":{"streamingImageGenerationResponse":{"imageId":"a","imageUrl":"u/a.jpg","progress":100}}}}`,
			func(t *testing.T, f frame) {
				g := f.Response.ImageGen
				if g == nil || g.id() != "a" || g.url() != "u/a.jpg" || !g.final() {
					t.Errorf("image = %+v; want final image a", g)
				}
			}},
		{"response error", `{"result":{"response":{"error":{"message":"limit","systemErrCode":"rate_limit"}}}}`,
			func(t *testing.T, f frame) {
				if e := f.Response.Error; e == nil || e.SystemErrCode != "rate_limit" {
					t.Errorf("error = %+v", e)
				}
			}},
		{"error line", `{"error":{"code":8,"message":"Too many requests","details":[]}}`,
			func(t *testing.T, f frame) {
				if f.Error == nil || f.Error.Code != 8 || f.Error.Message != "Too many requests" {
					t.Errorf("error = %+v; want code 8", f.Error)
				}
			}},
		{"error with marker code", `{"error":{"code":"unauthorized:blocked-user","message":"blocked"}}`,
			func(t *testing.T, f frame) {
				if f.Error == nil || f.Error.Marker != "unauthorized:blocked-user" {
					t.Errorf("error = %+v; want the marker", f.Error)
				}
			}},
		{"title", `{"result":{"title":{"newTitle":"Greeting"}}}`,
			func(t *testing.T, f frame) {
				if f.Title == nil || f.Title.NewTitle != "Greeting" {
					t.Errorf("title = %+v", f.Title)
				}
			}},
		{"flat follow-up token", `{"result":{"token":"x","responseId":"m"}}`,
			func(t *testing.T, f frame) {
				if f.Response == nil || f.Response.Token == nil || *f.Response.Token != "x" {
					t.Errorf("response = %+v; want token x", f.Response)
				}
			}},
		{"data prefix", `data: {"result":{"title":{"newTitle":"T"}}}`,
			func(t *testing.T, f frame) {
				if f.Title == nil || f.Title.NewTitle != "T" {
					t.Errorf("title = %+v", f.Title)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frames, err := parseFrames([]byte(tt.line))
			if err != nil {
				t.Fatalf("parseFrames: %v", err)
			}
			if len(frames) != 1 {
				t.Fatalf("got %d frames; want 1", len(frames))
			}
			tt.check(t, frames[0])
		})
	}
}

func TestParseFramesWithoutFrames(t *testing.T) {
	for _, line := range []string{"", "   ", "[DONE]", "data: [DONE]", `{"keepAlive":{}}`} {
		frames, err := parseFrames([]byte(line))
		if err != nil || len(frames) != 0 {
			t.Errorf("parseFrames(%q) = %d frames, %v; want none and no error", line, len(frames), err)
		}
	}
}

func TestParseFramesSeveralOnOneLine(t *testing.T) {
	line := `{"result":{"conversation":{"conversationId":"c"}}}{"result":{"title":{"newTitle":"T"}}}`
	frames, err := parseFrames([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 2 || frames[0].Conversation == nil || frames[1].Title == nil {
		t.Errorf("frames = %+v; want conversation then title", frames)
	}
}

func TestParseFramesMalformed(t *testing.T) {
	for _, line := range []string{`{"result":`, `not json`, `{"result":{"response":{"token":5}}}`} {
		if _, err := parseFrames([]byte(line)); err == nil {
			t.Errorf("parseFrames(%q) succeeded; want an error", line)
		}
	}
}

// FuzzParseFrame checks that no line makes the frame parser panic, and
// that a line it accepts yields frames with exactly one part set.
func FuzzParseFrame(f *testing.F) {
	for _, name := range []string{"plain.ndjson", "reasoning.ndjson", "image.ndjson"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f.Add([]byte(line))
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		frames, err := parseFrames(line)
		if err != nil {
			return
		}
		for _, fr := range frames {
			set := 0
			for _, p := range []bool{fr.Conversation != nil, fr.Response != nil, fr.Title != nil, fr.Error != nil} {
				if p {
					set++
				}
			}
			if set != 1 {
				t.Errorf("frame from %q has %d parts set; want 1", line, set)
			}
		}
	})
}

// FuzzParseCookie checks that an accepted cookie always has an sso value
// and that its header starts with it.
func FuzzParseCookie(f *testing.F) {
	for _, seed := range []string{"tok", "sso=tok; sso-rw=tok; cf_clearance=x", `"tok"`, "sso=", "a=b;c"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCookie(text)
		if err != nil {
			return
		}
		key := c.DedupKey()
		if key == "" {
			t.Fatalf("ParseCookie(%q) accepted an empty sso", text)
		}
		if !strings.HasPrefix(c.Header(""), "sso="+key+"; sso-rw="+key) {
			t.Errorf("Header = %q; want it to start with sso and sso-rw", c.Header(""))
		}
		if c.String() != "[redacted]" {
			t.Errorf("String = %q; want [redacted]", c.String())
		}
	})
}
