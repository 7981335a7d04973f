package grokweb_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

const newPath = "/rest/app-chat/conversations/new"

func followUpPath(conversationID string) string {
	return "/rest/app-chat/conversations/" + conversationID + "/responses"
}

func TestNewConversationStream(t *testing.T) {
	emu, ts := startEmulator(t, grokweb.Config{})
	message := "[system]\nAnswer briefly.\n\n[user]\nWhy is the sky blue?"
	resp := call(t, ts, http.MethodPost, newPath, ssoA, newChat("fast", message))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d; want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	frames := readFrames(t, resp)

	var order []string
	for _, f := range frames {
		key := resultKey(f)
		if key == "response" {
			r := response(f)
			for _, k := range []string{"userResponse", "uiLayout", "llmInfo", "finalMetadata", "modelResponse"} {
				if _, ok := r[k]; ok {
					key = k
				}
			}
			if _, ok := r["token"]; ok {
				key = "token"
			}
		}
		if len(order) == 0 || order[len(order)-1] != key {
			order = append(order, key)
		}
	}
	want := "conversation userResponse uiLayout llmInfo token finalMetadata modelResponse title"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("frame order = %q; want %q", got, want)
	}

	tokens := answerTokens(frames)
	if len(tokens) != 20 {
		t.Errorf("answer tokens = %d; want 20 (default Chunks)", len(tokens))
	}
	streamed := strings.Join(tokens, "")
	if !strings.Contains(streamed, "Why is the sky blue?") {
		t.Errorf("answer %q does not quote the last user line", streamed)
	}
	if words := len(strings.Fields(streamed)); words < 40 {
		t.Errorf("answer has %d words; want at least 40", words)
	}

	conv := frames[0]["result"].(map[string]any)["conversation"].(map[string]any)
	convID, _ := conv["conversationId"].(string)
	user := findResponse(frames, "userResponse")["userResponse"].(map[string]any)
	model := findResponse(frames, "modelResponse")["modelResponse"].(map[string]any)
	if model["message"] != streamed {
		t.Errorf("modelResponse.message = %q; want the streamed text %q", model["message"], streamed)
	}
	if model["parentResponseId"] != user["responseId"] {
		t.Errorf("modelResponse.parentResponseId = %v; want user responseId %v", model["parentResponseId"], user["responseId"])
	}
	if model["sender"] != "assistant" || user["sender"] != "human" {
		t.Errorf("senders = %v, %v; want assistant, human", model["sender"], user["sender"])
	}
	soft := 0
	for _, f := range frames {
		if r := response(f); r != nil && r["isSoftStop"] == true {
			soft++
			if r["token"] != "" {
				t.Errorf("soft stop token = %q; want empty", r["token"])
			}
		}
	}
	if soft != 1 {
		t.Errorf("soft stop frames = %d; want 1", soft)
	}
	last := frames[len(frames)-1]["result"].(map[string]any)["title"].(map[string]any)
	if last["newTitle"] != "Why is the sky blue?" {
		t.Errorf("newTitle = %v; want %q", last["newTitle"], "Why is the sky blue?")
	}

	turns, ok := emu.Conversation(convID)
	if !ok || len(turns) != 2 {
		t.Fatalf("Conversation(%q) = %d turns, %v; want 2, true", convID, len(turns), ok)
	}
	if turns[0].Message != message || turns[1].Message != streamed {
		t.Errorf("stored turns = %q, %q; want the request and the answer", turns[0].Message, turns[1].Message)
	}
	if turns[1].ResponseID != model["responseId"] {
		t.Errorf("stored answer id = %q; want %v", turns[1].ResponseID, model["responseId"])
	}
	if n := emu.ChatCount(ssoA); n != 1 {
		t.Errorf("ChatCount = %d; want 1", n)
	}
}

func TestChunksConfig(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{Chunks: 75})
	frames := readFrames(t, call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "hello")))
	if n := len(answerTokens(frames)); n != 75 {
		t.Errorf("answer tokens = %d; want 75", n)
	}
}

func TestFinalMetadataOmitted(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	body := newChat("auto", "hello")
	body["disableTextFollowUps"] = true
	frames := readFrames(t, call(t, ts, http.MethodPost, newPath, ssoA, body))
	if findResponse(frames, "finalMetadata") != nil {
		t.Error("finalMetadata sent although disableTextFollowUps is true")
	}
	if findResponse(frames, "modelResponse") == nil {
		t.Error("modelResponse missing")
	}
}

func TestReasoningFrames(t *testing.T) {
	tests := []struct {
		name         string
		body         map[string]any
		wantThinking int
		wantRollouts bool
	}{
		{"fast", map[string]any{"modeId": "fast"}, 0, false},
		{"auto", map[string]any{"modeId": "auto"}, 0, false},
		{"expert", map[string]any{"modeId": "expert"}, 3, false},
		{"heavy", map[string]any{"modeId": "heavy"}, 9, true},
		{"legacy modelMode", map[string]any{"modelName": "grok-4", "modelMode": "MODEL_MODE_EXPERT"}, 3, false},
		{"legacy isReasoning", map[string]any{"modelName": "grok-3", "isReasoning": true}, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ts := startEmulator(t, grokweb.Config{})
			tt.body["message"] = "Explain NDJSON"
			frames := readFrames(t, call(t, ts, http.MethodPost, newPath, ssoA, tt.body))

			thinking, rollouts, answerSeen := 0, 0, false
			for _, f := range frames {
				r := response(f)
				if r["isThinking"] != true {
					if r["messageTag"] == "final" {
						answerSeen = true
					}
					continue
				}
				thinking++
				if answerSeen {
					t.Error("thinking frame after answer text")
				}
				if tag := r["messageTag"]; tag != "header" && tag != "summary" {
					t.Errorf("thinking messageTag = %v; want header or summary", tag)
				}
				if _, ok := r["rolloutId"]; ok {
					rollouts++
				}
			}
			if thinking != tt.wantThinking {
				t.Errorf("thinking frames = %d; want %d", thinking, tt.wantThinking)
			}
			if got := rollouts > 0; got != tt.wantRollouts {
				t.Errorf("rolloutId present = %v; want %v", got, tt.wantRollouts)
			}
			if !strings.Contains(strings.Join(answerTokens(frames), ""), "Explain NDJSON") {
				t.Error("answer does not quote the request")
			}
		})
	}
}

func TestFollowUp(t *testing.T) {
	emu, ts := startEmulator(t, grokweb.Config{})
	first := readFrames(t, call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "first question")))
	convID := first[0]["result"].(map[string]any)["conversation"].(map[string]any)["conversationId"].(string)
	parent := findResponse(first, "modelResponse")["modelResponse"].(map[string]any)["responseId"].(string)

	body := newChat("auto", "second question")
	body["parentResponseId"] = parent
	resp := call(t, ts, http.MethodPost, followUpPath(convID), ssoA, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow-up status = %d; want 200", resp.StatusCode)
	}
	frames := readFrames(t, resp)
	for _, f := range frames {
		if k := resultKey(f); k == "conversation" || k == "title" {
			t.Errorf("follow-up stream has a %s frame", k)
		}
	}
	answer := strings.Join(answerTokens(frames), "")
	if !strings.Contains(answer, "turn 2") || !strings.Contains(answer, "second question") {
		t.Errorf("follow-up answer = %q; want turn 2 quoting the new question", answer)
	}
	user := findResponse(frames, "userResponse")["userResponse"].(map[string]any)
	if user["parentResponseId"] != parent {
		t.Errorf("user turn parent = %v; want %q", user["parentResponseId"], parent)
	}

	turns, _ := emu.Conversation(convID)
	if len(turns) != 4 {
		t.Fatalf("conversation has %d turns; want 4", len(turns))
	}
	if turns[2].Message != "second question" || turns[2].ParentResponseID != parent {
		t.Errorf("third turn = %+v; want the follow-up with parent %q", turns[2], parent)
	}
}

func TestFollowUpRejected(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{})
	first := readFrames(t, call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "question")))
	convID := first[0]["result"].(map[string]any)["conversation"].(map[string]any)["conversationId"].(string)
	parent := findResponse(first, "modelResponse")["modelResponse"].(map[string]any)["responseId"].(string)

	tests := []struct {
		name   string
		sso    string
		convID string
		parent string
		want   int
	}{
		{"other account", ssoB, convID, parent, http.StatusNotFound},
		{"unknown conversation", ssoA, "no-such-conversation", parent, http.StatusNotFound},
		{"unknown parent", ssoA, convID, "no-such-response", http.StatusNotFound},
		{"missing parent", ssoA, convID, "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := newChat("auto", "again")
			body["parentResponseId"] = tt.parent
			resp := call(t, ts, http.MethodPost, followUpPath(tt.convID), tt.sso, body)
			if resp.StatusCode != tt.want {
				t.Errorf("status = %d; want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestFlatFollowUps(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{FlatFollowUps: true})
	first := readFrames(t, call(t, ts, http.MethodPost, newPath, ssoA, newChat("auto", "question")))
	if response(first[1]) == nil {
		t.Fatal("new conversation frames are not under result.response")
	}
	convID := first[0]["result"].(map[string]any)["conversation"].(map[string]any)["conversationId"].(string)
	parent := findResponse(first, "modelResponse")["modelResponse"].(map[string]any)["responseId"].(string)

	body := newChat("auto", "again")
	body["parentResponseId"] = parent
	frames := readFrames(t, call(t, ts, http.MethodPost, followUpPath(convID), ssoA, body))
	tokens := 0
	for _, f := range frames {
		res := f["result"].(map[string]any)
		if _, ok := res["response"]; ok {
			t.Fatal("follow-up frame wrapped in response although FlatFollowUps is set")
		}
		if _, ok := res["token"]; ok {
			tokens++
		}
	}
	if tokens == 0 {
		t.Error("no flat token frames")
	}
}

func TestChatRequestErrors(t *testing.T) {
	_, ts := startEmulator(t, grokweb.Config{Accounts: []grokweb.Account{{SSO: ssoA, Tier: grokweb.TierBasic}}})
	tests := []struct {
		name     string
		body     any
		want     int
		wantCode float64
	}{
		{"mode above tier", newChat("expert", "hi"), http.StatusForbidden, 7},
		{"heavy above tier", newChat("heavy", "hi"), http.StatusForbidden, 7},
		{"unknown mode", newChat("turbo", "hi"), http.StatusBadRequest, 3},
		{"unknown modelMode", map[string]any{"message": "hi", "modelMode": "MODEL_MODE_X"}, http.StatusBadRequest, 3},
		{"empty message", newChat("fast", ""), http.StatusBadRequest, 3},
		{"unknown attachment", map[string]any{"message": "hi", "modeId": "fast", "fileAttachments": []string{"nope"}}, http.StatusBadRequest, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := call(t, ts, http.MethodPost, newPath, ssoA, tt.body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d; want %d", resp.StatusCode, tt.want)
			}
			if code := errorCode(decodeJSON(t, resp)); code != tt.wantCode {
				t.Errorf("error code = %v; want %v", code, tt.wantCode)
			}
		})
	}
}
