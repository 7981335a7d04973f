package grokweb_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	emulator "github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/upstream"
	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
)

// startTransport starts an emulator and a client on the given chat
// transport. edit, when not nil, changes the client config first.
func startTransport(t *testing.T, ecfg emulator.Config, transport string, edit func(*grokweb.Config)) (*emulator.Server, *grokweb.Client) {
	t.Helper()
	if ecfg.Accounts == nil {
		ecfg.Accounts = []emulator.Account{{SSO: emuSSO, Tier: emulator.TierSuper}}
	}
	if ecfg.Chunks == 0 {
		ecfg.Chunks = 5
	}
	ecfg.RequireSSORW = true
	emu := emulator.New(ecfg)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	cfg := grokweb.Config{BaseURL: srv.URL, HTTPClient: srv.Client(), Transport: transport}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return emu, grokweb.New(cfg)
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTransportsReasoningAndFollowUp(t *testing.T) {
	for _, transport := range []string{grokweb.TransportREST, grokweb.TransportWS} {
		t.Run(transport, func(t *testing.T) {
			emu, c := startTransport(t, emulator.Config{}, transport, nil)
			s, err := c.Chat(ctx(t), emuCred(), upstream.ChatRequest{Model: "expert",
				Messages: []upstream.Message{{Role: "user", Text: "Why is the sky blue?"}}})
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
			var reasoning, text strings.Builder
			for _, ev := range events {
				switch ev.Kind {
				case upstream.EventReasoning:
					reasoning.WriteString(ev.Text)
				case upstream.EventText:
					text.WriteString(ev.Text)
				}
			}
			if !strings.Contains(reasoning.String(), "Thinking about your request") {
				t.Errorf("reasoning = %q; want the emulator's thinking header", reasoning.String())
			}
			if !strings.HasPrefix(text.String(), "Emulated expert answer, turn 1. You wrote: Why is the sky blue?") {
				t.Errorf("text = %q; want the emulated expert answer", text.String())
			}
			done := events[len(events)-1]
			if done.Kind != upstream.EventDone || done.ResponseID == "" || done.ParentResponseID == "" {
				t.Fatalf("last event = %+v; want done with response and parent ids", done)
			}
			if events[0].ResponseID != done.ResponseID {
				t.Errorf("start response id = %q; want the answer's %q from the first event", events[0].ResponseID, done.ResponseID)
			}

			follow := upstream.ChatRequest{Model: "expert", ConversationID: done.ConversationID,
				ParentResponseID: done.ResponseID, Messages: []upstream.Message{{Role: "user", Text: "And at sunset?"}}}
			s, err = c.Chat(ctx(t), emuCred(), follow)
			if err != nil {
				t.Fatalf("follow-up Chat: %v", err)
			}
			events, err = readAll(t, s)
			if err != nil {
				t.Fatalf("follow-up stream: %v", err)
			}
			if got := texts(events, upstream.EventText); !strings.Contains(got, "turn 2. You wrote: And at sunset?") {
				t.Errorf("follow-up text = %q; want turn 2 of the same conversation", got)
			}
			turns, _ := emu.Conversation(done.ConversationID)
			if len(turns) != 4 || turns[2].ParentResponseID != done.ResponseID {
				t.Errorf("conversation has %d turns (%+v); want 4, the third replying to %q", len(turns), turns, done.ResponseID)
			}

			gw := emu.GatewaySessions()
			if transport == grokweb.TransportREST {
				if len(gw) != 0 {
					t.Errorf("REST transport opened %d gateway connections; want 0", len(gw))
				}
				return
			}
			if len(gw) != 2 || !gw[0].Completed || gw[1].ConversationID != done.ConversationID {
				t.Fatalf("gateway sessions = %+v; want two completed, the second on the first's conversation", gw)
			}
			waitFor(t, "a normal close of both connections", func() bool {
				gw := emu.GatewaySessions()
				return gw[0].CloseStatus == 1000 && gw[1].CloseStatus == 1000
			})
		})
	}
}

func texts(events []upstream.Event, kind upstream.EventKind) string {
	var b strings.Builder
	for _, ev := range events {
		if ev.Kind == kind {
			b.WriteString(ev.Text)
		}
	}
	return b.String()
}

func TestWSFaults(t *testing.T) {
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
		{emulator.Fault{Kind: emulator.FaultErrorFrame, AfterFrames: 3}, upstream.OutcomeBrokenStream, false},
		{emulator.Fault{Kind: emulator.FaultCut, AfterFrames: 3}, upstream.OutcomeBrokenStream, false},
	}
	for _, tt := range tests {
		name := string(tt.fault.Kind)
		if tt.fault.AfterFrames > 0 {
			name += " after first event"
		}
		t.Run(name, func(t *testing.T) {
			emu, c := startTransport(t, emulator.Config{}, grokweb.TransportWS, nil)
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
				t.Errorf("outcome = %q (%v); want %q", ue.Outcome, err, tt.wantOutcome)
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

func TestWSQuotaAndTier(t *testing.T) {
	emu, c := startTransport(t, emulator.Config{Accounts: []emulator.Account{{SSO: emuSSO, Tier: emulator.TierBasic}}},
		grokweb.TransportWS, nil)
	_, err := c.Chat(ctx(t), emuCred(), upstream.ChatRequest{Model: "heavy",
		Messages: []upstream.Message{{Role: "user", Text: "hello"}}})
	if ue := upstreamErr(t, err); ue.Code != 7 {
		t.Errorf("heavy mode on basic: code %d (%v); want the access-denied code 7", ue.Code, err)
	}

	for i := range 30 {
		s, err := c.Chat(ctx(t), emuCred(), upstream.ChatRequest{Model: "fast",
			Messages: []upstream.Message{{Role: "user", Text: "hello"}}})
		if err != nil {
			t.Fatalf("chat %d of the 30 basic fast chats: %v", i+1, err)
		}
		s.Close()
	}
	_, err = c.Chat(ctx(t), emuCred(), upstream.ChatRequest{Model: "fast",
		Messages: []upstream.Message{{Role: "user", Text: "one more"}}})
	if ue := upstreamErr(t, err); ue.Outcome != upstream.OutcomeRateLimited {
		t.Errorf("31st fast chat: outcome %q; want rate_limited", ue.Outcome)
	}
	if n := emu.ChatCount(emuSSO); n != 32 {
		t.Errorf("chat count = %d; want 32", n)
	}
}

func upstreamErr(t *testing.T, err error) *upstream.Error {
	t.Helper()
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		t.Fatalf("error = %v; want *upstream.Error", err)
	}
	return ue
}

func TestWSCancelClosesGatewayConnection(t *testing.T) {
	emu, c := startTransport(t, emulator.Config{Chunks: 50, TokenDelay: 40 * time.Millisecond},
		grokweb.TransportWS, nil)
	cctx, cancel := context.WithCancel(ctx(t))
	s, err := c.Chat(cctx, emuCred(), userChatReq("tell me a long story"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	if _, err := s.Next(); err != nil {
		t.Fatalf("Next: %v", err)
	}
	cancel()
	s.Close()
	waitFor(t, "the gateway connection to end", func() bool {
		gw := emu.GatewaySessions()
		return len(gw) == 1 && gw[0].Ended
	})
	if gw := emu.GatewaySessions(); gw[0].Completed {
		t.Error("emulator finished the answer after the client went away")
	}
	if _, err := s.Next(); upstream.OutcomeOf(err) != upstream.OutcomeCanceled {
		t.Errorf("Next after Close = %v; want canceled", err)
	}
}

func userChatReq(text string) upstream.ChatRequest {
	return upstream.ChatRequest{Model: "fast", Messages: []upstream.Message{{Role: "user", Text: text}}}
}

func TestWSHeartbeat(t *testing.T) {
	emu, c := startTransport(t, emulator.Config{Chunks: 10, TokenDelay: 30 * time.Millisecond},
		grokweb.TransportWS, func(cfg *grokweb.Config) { cfg.HeartbeatInterval = 20 * time.Millisecond })
	s, err := c.Chat(ctx(t), emuCred(), userChatReq("hello"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	if _, err := readAll(t, s); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if gw := emu.GatewaySessions(); len(gw) != 1 || gw[0].Pings == 0 {
		t.Errorf("gateway sessions = %+v; want one with pings", gw)
	}
}

// clock is a settable clock for the fallback period.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestAutoFallsBackToRESTAndRemembers(t *testing.T) {
	clk := &clock{now: time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)}
	emu, c := startTransport(t, emulator.Config{RefuseUpgrade: true}, grokweb.TransportAuto,
		func(cfg *grokweb.Config) { cfg.FallbackTTL = 10 * time.Minute; cfg.Now = clk.Now })
	cred := emuCred()

	chat := func() {
		t.Helper()
		s, err := c.Chat(ctx(t), cred, userChatReq("hello"))
		if err != nil {
			t.Fatalf("Chat: %v", err)
		}
		if _, err := readAll(t, s); err != nil {
			t.Fatalf("stream: %v", err)
		}
	}
	restChats := func() int {
		n := 0
		for _, r := range emu.Requests() {
			if r.Path == "/rest/app-chat/conversations/new" {
				n++
			}
		}
		return n
	}

	chat()
	if n := len(emu.GatewaySessions()); n != 1 || restChats() != 1 {
		t.Fatalf("first chat: %d upgrades, %d REST chats; want 1 refused upgrade then REST", n, restChats())
	}
	if got := c.ChatTransport(cred.SessionID); got != grokweb.TransportREST {
		t.Errorf("transport after a refused upgrade = %q; want rest", got)
	}
	chat()
	if n := len(emu.GatewaySessions()); n != 1 || restChats() != 2 {
		t.Fatalf("second chat: %d upgrades, %d REST chats; want no new upgrade", n, restChats())
	}

	// Once the period is over the gateway is tried again.
	emu.SetRefuseUpgrade(false)
	emu.SetRefuseRESTChat(true)
	clk.Advance(11 * time.Minute)
	chat()
	gw := emu.GatewaySessions()
	if len(gw) != 2 || !gw[1].Completed || restChats() != 2 {
		t.Fatalf("after the period: gateway %+v, %d REST chats; want the chat over the gateway", gw, restChats())
	}
	if got := c.ChatTransport(cred.SessionID); got != grokweb.TransportWS {
		t.Errorf("transport = %q; want ws", got)
	}
}

func TestRESTChatRefused(t *testing.T) {
	emu, c := startTransport(t, emulator.Config{RefuseRESTChat: true}, grokweb.TransportREST, nil)
	_, err := c.Chat(ctx(t), emuCred(), userChatReq("hello"))
	if ue := upstreamErr(t, err); ue.Status != 404 || ue.Outcome != upstream.OutcomeRejectedRequest {
		t.Errorf("REST chat on a gateway-only server: %v; want 404 rejected_request", err)
	}
	if n := len(emu.GatewaySessions()); n != 0 {
		t.Errorf("REST transport opened %d gateway connections", n)
	}
}
