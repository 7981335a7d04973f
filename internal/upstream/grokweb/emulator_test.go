package grokweb_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	emulator "github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/upstream"
	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
)

const emuSSO = "emulator-sso-token-0001"

func startEmulator(t *testing.T, tier string) (*emulator.Server, *grokweb.Client) {
	t.Helper()
	emu := emulator.New(emulator.Config{
		Accounts:     []emulator.Account{{SSO: emuSSO, Tier: tier}},
		Chunks:       5,
		RequireSSORW: true,
	})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return emu, grokweb.New(grokweb.Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
}

func emuCred() upstream.Credential {
	return upstream.Credential{SessionID: "s1", Secret: secret.New(emuSSO)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// readAll reads a stream to its end and returns its events.
func readAll(t *testing.T, s upstream.Stream) ([]upstream.Event, error) {
	t.Helper()
	defer s.Close()
	var events []upstream.Event
	for range 1000 {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
	t.Fatal("stream did not end after 1000 events")
	return nil, nil
}

func TestEmulatorChatAndFollowUp(t *testing.T) {
	emu, c := startEmulator(t, emulator.TierSuper)
	req := upstream.ChatRequest{Model: "fast", Messages: []upstream.Message{
		{Role: "system", Text: "Be brief."}, {Role: "user", Text: "Say hi"},
	}}
	s, err := c.Chat(ctx(t), emuCred(), req)
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	events, err := readAll(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if events[0].Kind != upstream.EventStart || events[0].ConversationID == "" {
		t.Fatalf("first event = %+v; want a start with a conversation id", events[0])
	}
	done := events[len(events)-1]
	if done.Kind != upstream.EventDone || done.ResponseID == "" {
		t.Fatalf("last event = %+v; want done with a response id", done)
	}
	var text strings.Builder
	for _, ev := range events {
		if ev.Kind == upstream.EventText {
			text.WriteString(ev.Text)
		}
	}
	if text.Len() == 0 {
		t.Error("answer has no text")
	}

	follow := upstream.ChatRequest{Model: "fast", ConversationID: done.ConversationID,
		ParentResponseID: done.ResponseID, Messages: []upstream.Message{{Role: "user", Text: "And again"}}}
	s, err = c.Chat(ctx(t), emuCred(), follow)
	if err != nil {
		t.Fatalf("follow-up Chat: %v", err)
	}
	if _, err := readAll(t, s); err != nil {
		t.Fatalf("follow-up stream: %v", err)
	}
	turns, ok := emu.Conversation(done.ConversationID)
	if !ok {
		t.Fatal("emulator does not know the conversation")
	}
	if len(turns) < 4 {
		t.Errorf("conversation has %d turns; want at least 4 (two questions, two answers)", len(turns))
	}
}

func TestEmulatorImageAndAsset(t *testing.T) {
	_, c := startEmulator(t, emulator.TierSuper)
	s, err := c.Chat(ctx(t), emuCred(), upstream.ChatRequest{Model: "fast",
		Messages: []upstream.Message{{Role: "user", Text: "Draw a red fox"}}})
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	events, err := readAll(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	var image *upstream.ImageRef
	for _, ev := range events {
		if ev.Kind == upstream.EventImage {
			image = ev.Image
			break
		}
	}
	if image == nil {
		t.Fatal("no image event")
	}
	if strings.Contains(image.URL, "-part-") {
		t.Errorf("image URL %q is a partial preview", image.URL)
	}

	body, contentType, err := c.FetchAsset(ctx(t), emuCred(), image.URL)
	if err != nil {
		t.Fatalf("FetchAsset: %v", err)
	}
	defer body.Close()
	data, _ := io.ReadAll(body)
	if len(data) == 0 {
		t.Error("asset body is empty")
	}
	if !strings.HasPrefix(contentType, "image/") {
		t.Errorf("content type = %q; want an image type", contentType)
	}
}

func TestEmulatorProbe(t *testing.T) {
	emu, c := startEmulator(t, emulator.TierSuper)
	p, err := c.Probe(ctx(t), emuCred())
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if p.AccountID == "" {
		t.Error("probe learned no account id")
	}
	if p.Tier != grokweb.TierSuper {
		t.Errorf("tier = %q; want super", p.Tier)
	}
	if q := p.Quota["fast"]; q.Total != 140 || q.Window != 2*time.Hour {
		t.Errorf("fast quota = %+v; want total 140 per 2h", q)
	}
	if n := emu.ChatCount(emuSSO); n != 0 {
		t.Errorf("probe spent %d chats; want 0", n)
	}
}

func TestEmulatorProbeDeadLogin(t *testing.T) {
	_, c := startEmulator(t, emulator.TierSuper)
	cred := upstream.Credential{Secret: secret.New("sso=unknown-login-value")}
	_, err := c.Probe(ctx(t), cred)
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.Outcome != upstream.OutcomeUnauthorized {
		t.Fatalf("Probe error = %v; want unauthorized", err)
	}
}

func TestEmulatorFaults(t *testing.T) {
	tests := []struct {
		fault       emulator.Fault
		wantOutcome upstream.Outcome
		fromChat    bool
	}{
		{emulator.Fault{Kind: emulator.FaultUnauthorized}, upstream.OutcomeUnauthorized, true},
		{emulator.Fault{Kind: emulator.FaultAntiBot}, upstream.OutcomeEgressRejected, true},
		{emulator.Fault{Kind: emulator.FaultCloudflare}, upstream.OutcomeEgressRejected, true},
		{emulator.Fault{Kind: emulator.FaultServerError}, upstream.OutcomeUnavailable, true},
		{emulator.Fault{Kind: emulator.FaultRateLimited, RetryAfter: 90 * time.Second}, upstream.OutcomeRateLimited, true},
		{emulator.Fault{Kind: emulator.FaultBlocked}, upstream.OutcomeBlocked, true},
		{emulator.Fault{Kind: emulator.FaultErrorFrame}, upstream.OutcomeRateLimited, true},
		{emulator.Fault{Kind: emulator.FaultErrorFrame, AfterFrames: 6}, upstream.OutcomeBrokenStream, false},
		{emulator.Fault{Kind: emulator.FaultCut, AfterFrames: 6}, upstream.OutcomeBrokenStream, false},
	}
	for _, tt := range tests {
		name := string(tt.fault.Kind)
		if tt.fault.AfterFrames > 0 {
			name += " after first event"
		}
		t.Run(name, func(t *testing.T) {
			emu, c := startEmulator(t, emulator.TierSuper)
			emu.SetFault(emuSSO, tt.fault)
			s, err := c.Chat(ctx(t), emuCred(), upstream.ChatRequest{Model: "fast",
				Messages: []upstream.Message{{Role: "user", Text: "hello"}}})
			if tt.fromChat && s != nil {
				t.Fatal("Chat returned a stream; want the error from Chat")
			}
			if !tt.fromChat {
				if err != nil {
					t.Fatalf("Chat: %v; want the error from Next", err)
				}
				_, err = readAll(t, s)
			}
			var ue *upstream.Error
			if !errors.As(err, &ue) {
				t.Fatalf("error = %v; want *upstream.Error", err)
			}
			if ue.Outcome != tt.wantOutcome {
				t.Errorf("outcome = %q; want %q", ue.Outcome, tt.wantOutcome)
			}
			if tt.fault.Kind == emulator.FaultRateLimited && ue.RetryAfter != 90*time.Second {
				t.Errorf("retry after = %v; want 90s", ue.RetryAfter)
			}
			if strings.Contains(err.Error(), emuSSO) {
				t.Errorf("error text contains the sso value: %q", err.Error())
			}
		})
	}
}
