package grokweb

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

func TestChatPlainAnswer(t *testing.T) {
	c, _ := newTestClient(t, serveLines(fixture(t, "plain.ndjson")...))
	s, err := c.Chat(testContext(t), testCred(), userChat("Say hi"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	events, err := collect(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}

	want := []upstream.EventKind{upstream.EventStart, upstream.EventText, upstream.EventText, upstream.EventDone}
	if got := kinds(events); !slices.Equal(got, want) {
		t.Fatalf("event kinds = %v; want %v", got, want)
	}
	start := events[0]
	if start.ConversationID != "c-7f1" || start.ParentResponseID != "u-1" || start.ResponseID != "m-1" {
		t.Errorf("start ids = %q %q %q; want c-7f1 u-1 m-1", start.ConversationID, start.ParentResponseID, start.ResponseID)
	}
	if got := texts(events, upstream.EventText); got != "Hi there!" {
		t.Errorf("text = %q; want %q", got, "Hi there!")
	}
	done := events[3]
	if done.FinishReason != "stop" {
		t.Errorf("finish reason = %q; want stop", done.FinishReason)
	}
	if done.Model != "grok-4-auto" {
		t.Errorf("done model = %q; want grok-4-auto", done.Model)
	}
	if done.ResponseID != "m-1" || done.ConversationID != "c-7f1" || done.ParentResponseID != "u-1" {
		t.Errorf("done ids = %q %q %q; want c-7f1 m-1 u-1", done.ConversationID, done.ResponseID, done.ParentResponseID)
	}
}

func TestChatReasoningAndCitation(t *testing.T) {
	c, _ := newTestClient(t, serveLines(fixture(t, "reasoning.ndjson")...))
	s, err := c.Chat(testContext(t), testCred(), userChat("Latest Go release?"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	events, err := collect(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}

	wantReasoning := "Thinking about your requestChecking the Go release history."
	if got := texts(events, upstream.EventReasoning); got != wantReasoning {
		t.Errorf("reasoning = %q; want %q", got, wantReasoning)
	}
	wantText := "The newest release is listed on go.dev [[1]](https://go.dev/doc/devel/release)."
	if got := texts(events, upstream.EventText); got != wantText {
		t.Errorf("text = %q; want %q", got, wantText)
	}
	if strings.Contains(texts(events, upstream.EventReasoning), "tool_usage_card") {
		t.Error("tool card markup leaked into reasoning")
	}
	if last := events[len(events)-1]; last.Kind != upstream.EventDone {
		t.Errorf("last event = %v; want EventDone", last.Kind)
	}
}

func TestChatGeneratedImage(t *testing.T) {
	c, srv := newTestClient(t, serveLines(fixture(t, "image.ndjson")...))
	s, err := c.Chat(testContext(t), testCred(), userChat("Draw a red fox"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	events, err := collect(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}

	var images []*upstream.ImageRef
	for _, ev := range events {
		if ev.Kind == upstream.EventImage {
			images = append(images, ev.Image)
		}
	}
	if len(images) != 1 {
		t.Fatalf("got %d image events; want 1 (final image once, no partial)", len(images))
	}
	wantURL := srv.URL + "/users/u-42/generated/a1b2/image.jpg"
	if images[0].URL != wantURL {
		t.Errorf("image URL = %q; want %q", images[0].URL, wantURL)
	}
	if images[0].MediaType != "image/jpeg" {
		t.Errorf("image media type = %q; want image/jpeg", images[0].MediaType)
	}
	if got := texts(events, upstream.EventText); got != "Here is your fox." {
		t.Errorf("text = %q; want render tag dropped", got)
	}
}

func TestChatModeratedImageWithheld(t *testing.T) {
	c, _ := newTestClient(t, serveLines(
		`{"result":{"response":{"token":"Here.","messageTag":"final","responseId":"m"}}}`,
		`{"result":{"response":{"streamingImageGenerationResponse":{"imageId":"x","imageUrl":"users/u/generated/x/image.jpg","progress":100,"moderated":true},"responseId":"m"}}}`,
		`{"result":{"response":{"modelResponse":{"responseId":"m","message":"Here.","generatedImageUrls":["users/u/generated/x/image.jpg"]}}}}`,
	))
	s, err := c.Chat(testContext(t), testCred(), userChat("draw"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	events, err := collect(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if slices.Contains(kinds(events), upstream.EventImage) {
		t.Error("moderated image was sent through generatedImageUrls")
	}
}

func TestChatCompletesTextFromFinalFrame(t *testing.T) {
	c, _ := newTestClient(t, serveLines(
		`{"result":{"token":"Hello","responseId":"m"}}`,
		`{"result":{"modelResponse":{"responseId":"m","message":"Hello world","parentResponseId":"u"}}}`,
	))
	req := userChat("again")
	req.ConversationID, req.ParentResponseID = "c-1", "m-0"
	s, err := c.Chat(testContext(t), testCred(), req)
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	events, err := collect(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if got := texts(events, upstream.EventText); got != "Hello world" {
		t.Errorf("text = %q; want %q", got, "Hello world")
	}
	if events[0].ConversationID != "c-1" {
		t.Errorf("start conversation = %q; want the follow-up's c-1", events[0].ConversationID)
	}
}

func TestChatSoftStopWithoutFinalFrame(t *testing.T) {
	c, _ := newTestClient(t, serveLines(
		`{"result":{"response":{"token":"ok","messageTag":"final","responseId":"m"}}}`,
		`{"result":{"response":{"token":"","isSoftStop":true,"responseId":"m"}}}`,
	))
	s, err := c.Chat(testContext(t), testCred(), userChat("x"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	events, err := collect(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if last := events[len(events)-1]; last.Kind != upstream.EventDone {
		t.Errorf("last event = %v; want EventDone", last.Kind)
	}
}

// TestChatStreamsWithoutBuffering holds the server after the first token
// until the test has read that token, so a client that waits for more of
// the body before returning events would hang until the deadline.
func TestChatStreamsWithoutBuffering(t *testing.T) {
	firstRead := make(chan struct{})
	var once sync.Once
	lines := fixture(t, "plain.ndjson")
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i, l := range lines {
			io.WriteString(w, l+"\n")
			w.(http.Flusher).Flush()
			if strings.Contains(l, `"token":"Hi"`) {
				select {
				case <-firstRead:
				case <-time.After(5 * time.Second):
					t.Errorf("client did not deliver the first token while line %d was the last sent", i)
					return
				}
			}
		}
	}
	c, _ := newTestClient(t, http.HandlerFunc(h))
	s, err := c.Chat(testContext(t), testCred(), userChat("Say hi"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	defer s.Close()

	for {
		ev, err := s.Next()
		if err != nil {
			t.Fatalf("Next before the first token: %v", err)
		}
		if ev.Kind == upstream.EventText {
			if ev.Text != "Hi" {
				t.Fatalf("first text = %q; want Hi", ev.Text)
			}
			once.Do(func() { close(firstRead) })
			break
		}
	}
	events, err := collect(t, s)
	if err != nil {
		t.Fatalf("rest of stream: %v", err)
	}
	if got := texts(events, upstream.EventText); got != " there!" {
		t.Errorf("remaining text = %q; want %q", got, " there!")
	}
}

func TestChatCloseCancelsBody(t *testing.T) {
	released := make(chan struct{})
	h := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a gone client only after the body
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"result":{"response":{"token":"a","messageTag":"final","responseId":"m"}}}`+"\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			close(released)
		case <-time.After(5 * time.Second):
		}
	}
	c, _ := newTestClient(t, http.HandlerFunc(h))
	s, err := c.Chat(testContext(t), testCred(), userChat("x"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	s.Close()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("server request context was not canceled after Close")
	}
	_, err = s.Next()
	if ue := upstreamError(t, err); ue.Outcome != upstream.OutcomeCanceled {
		t.Errorf("Next after Close: outcome %q; want canceled", ue.Outcome)
	}
}

// recordedRequest is what a test handler saw of one request.
type recordedRequest struct {
	Path   string
	Header http.Header
	Body   map[string]any
}

func recordChat(t *testing.T, reqs chan<- recordedRequest) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		reqs <- recordedRequest{Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
		serveLines(fixture(t, "plain.ndjson")...)(w, r)
	}
}

func TestChatNewConversationRequest(t *testing.T) {
	reqs := make(chan recordedRequest, 1)
	c, _ := newTestClient(t, recordChat(t, reqs))
	req := upstream.ChatRequest{Model: "expert", Messages: []upstream.Message{
		{Role: "system", Text: "Be brief."},
		{Role: "user", Text: "Why is the sky blue?"},
	}}
	s, err := c.Chat(testContext(t), testCred(), req)
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	s.Close()
	got := <-reqs

	if got.Path != "/rest/app-chat/conversations/new" {
		t.Errorf("path = %q; want /rest/app-chat/conversations/new", got.Path)
	}
	if got.Body["modeId"] != "expert" {
		t.Errorf("modeId = %v; want expert", got.Body["modeId"])
	}
	if _, ok := got.Body["modelName"]; ok {
		t.Error("modeId request also sent modelName")
	}
	if got.Body["message"] != "[system]\nBe brief.\n\n[user]\nWhy is the sky blue?" {
		t.Errorf("message = %q", got.Body["message"])
	}
	if got.Body["temporary"] != true {
		t.Errorf("temporary = %v; want true", got.Body["temporary"])
	}
	if _, ok := got.Body["parentResponseId"]; ok {
		t.Error("new conversation sent parentResponseId")
	}

	h := got.Header
	wantCookie := "sso=" + testSSO + "; sso-rw=" + testSSO + "; cf_clearance=" + testClearance
	if h.Get("Cookie") != wantCookie {
		t.Errorf("Cookie = %q; want %q", h.Get("Cookie"), wantCookie)
	}
	if h.Get("User-Agent") != DefaultUserAgent {
		t.Errorf("User-Agent = %q", h.Get("User-Agent"))
	}
	if len(h.Get("x-xai-request-id")) != 36 {
		t.Errorf("x-xai-request-id = %q; want a UUID", h.Get("x-xai-request-id"))
	}
	sig, err := base64.RawStdEncoding.DecodeString(h.Get("x-statsig-id"))
	if err != nil || len(sig) != 70 {
		t.Errorf("x-statsig-id decodes to %d bytes (err %v); want 70", len(sig), err)
	}
	if !strings.Contains(h.Get("Sec-Ch-Ua"), `v="146"`) {
		t.Errorf("Sec-Ch-Ua = %q; want Chrome 146 brands", h.Get("Sec-Ch-Ua"))
	}
}

func TestChatFollowUpRequest(t *testing.T) {
	reqs := make(chan recordedRequest, 1)
	c, _ := newTestClient(t, recordChat(t, reqs))
	req := userChat("And at sunset?")
	req.ConversationID, req.ParentResponseID = "c-7f1", "m-1"
	s, err := c.Chat(testContext(t), testCred(), req)
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	s.Close()
	got := <-reqs

	if got.Path != "/rest/app-chat/conversations/c-7f1/responses" {
		t.Errorf("path = %q; want the follow-up path", got.Path)
	}
	if got.Body["parentResponseId"] != "m-1" {
		t.Errorf("parentResponseId = %v; want m-1", got.Body["parentResponseId"])
	}
	if got.Body["message"] != "And at sunset?" {
		t.Errorf("message = %q; want the new turn alone", got.Body["message"])
	}
}

func TestChatSelectorStyles(t *testing.T) {
	tests := []struct {
		selector   string
		wantName   any
		wantMode   any
		wantModeID any
	}{
		{SelectorModeID, nil, nil, "fast"},
		{SelectorModelMode, "grok-420", "MODEL_MODE_FAST", nil},
		{SelectorModelName, "grok-420", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.selector, func(t *testing.T) {
			reqs := make(chan recordedRequest, 1)
			_, srv := newTestClient(t, recordChat(t, reqs))
			c := New(Config{BaseURL: srv.URL, HTTPClient: srv.Client(), Selector: tt.selector, StatsigMode: StatsigNone})
			s, err := c.Chat(testContext(t), testCred(), userChat("x"))
			if err != nil {
				t.Fatalf("Chat: %v", err)
			}
			s.Close()
			got := <-reqs
			if got.Body["modelName"] != tt.wantName {
				t.Errorf("modelName = %v; want %v", got.Body["modelName"], tt.wantName)
			}
			if got.Body["modelMode"] != tt.wantMode {
				t.Errorf("modelMode = %v; want %v", got.Body["modelMode"], tt.wantMode)
			}
			if got.Body["modeId"] != tt.wantModeID {
				t.Errorf("modeId = %v; want %v", got.Body["modeId"], tt.wantModeID)
			}
			if got.Header.Get("x-statsig-id") != "" {
				t.Error("statsig mode none still sent x-statsig-id")
			}
		})
	}
}

func TestChatUploadsImages(t *testing.T) {
	var uploads []map[string]string
	var chat map[string]any
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rest/app-chat/upload-file", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		json.NewDecoder(r.Body).Decode(&body)
		uploads = append(uploads, body)
		io.WriteString(w, `{"fileMetadataId":"file-1","fileUri":"users/u/file-1/content"}`)
	})
	mux.HandleFunc("POST /rest/app-chat/conversations/new", func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&chat)
		serveLines(fixture(t, "plain.ndjson")...)(w, r)
	})
	c, _ := newTestClient(t, mux)
	req := upstream.ChatRequest{Model: "fast", Messages: []upstream.Message{
		{Role: "user", Text: "What is this?", Images: []upstream.Image{{MediaType: "image/png", Data: []byte("png-bytes")}}},
	}}
	s, err := c.Chat(testContext(t), testCred(), req)
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	s.Close()

	if len(uploads) != 1 {
		t.Fatalf("uploads = %d; want 1", len(uploads))
	}
	if uploads[0]["fileMimeType"] != "image/png" || uploads[0]["fileName"] != "image-1.png" {
		t.Errorf("upload = %v %v; want image/png image-1.png", uploads[0]["fileMimeType"], uploads[0]["fileName"])
	}
	if uploads[0]["content"] != base64.StdEncoding.EncodeToString([]byte("png-bytes")) {
		t.Errorf("upload content = %q; want base64 of the image", uploads[0]["content"])
	}
	if got, _ := json.Marshal(chat["fileAttachments"]); string(got) != `["file-1"]` {
		t.Errorf("fileAttachments = %s; want [\"file-1\"]", got)
	}
}

func TestChatUsesSessionProxy(t *testing.T) {
	proxied := make(chan string, 1)
	proxy := func(w http.ResponseWriter, r *http.Request) {
		// A forward proxy receives the absolute URL of the target.
		proxied <- r.URL.String()
		serveLines(fixture(t, "plain.ndjson")...)(w, r)
	}
	_, proxySrv := newTestClient(t, http.HandlerFunc(proxy))
	c := New(Config{BaseURL: "http://grok.test"})
	cred := testCred()
	cred.ProxyURL = secret.New(proxySrv.URL)
	s, err := c.Chat(testContext(t), cred, userChat("x"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	s.Close()
	if got := <-proxied; got != "http://grok.test/rest/app-chat/conversations/new" {
		t.Errorf("proxy saw %q; want the chat URL", got)
	}
}
