package e2e

import (
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

// TestChatOverGateway runs a two-turn conversation with the default
// transport (auto): both turns go over the WebSocket gateway, the second
// continuing the first's upstream conversation.
func TestChatOverGateway(t *testing.T) {
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) { c.GrokChatTransport = "auto" }))
	c := g.client(userKey)
	history := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("First question over the gateway?")}
	first := chatTurn(t, c, history)
	history = append(history, openai.AssistantMessage(first), openai.UserMessage("Second question?"))
	second := chatTurn(t, c, history)

	if !strings.Contains(first, "turn 1.") || !strings.Contains(second, "turn 2.") {
		t.Errorf("answers = %q, %q; want turns 1 and 2 of one conversation", first, second)
	}
	// The emulator marks a session completed after its last frame, which
	// the gateway may already have answered from.
	g.waitUntil("two completed gateway sessions", func() bool {
		gw := g.Emu.GatewaySessions()
		return len(gw) == 2 && gw[0].Completed && gw[1].Completed
	})
	gw := g.Emu.GatewaySessions()
	if len(gw) != 2 || !gw[0].Completed || !gw[1].Completed || gw[0].ConversationID != gw[1].ConversationID {
		t.Errorf("gateway sessions = %+v; want two completed on one conversation", gw)
	}
	if n := len(g.upstreamChats(0)); n != 0 {
		t.Errorf("REST chats = %d; want 0", n)
	}
	g.assertNoSecretsLogged()
}

// TestGatewayRefusedFallsBackToREST checks that auto answers over REST
// when the upgrade is refused, and does not try the gateway again for
// the same session right away.
func TestGatewayRefusedFallsBackToREST(t *testing.T) {
	g := startGateway(t, sqliteStore,
		withConfig(func(c *config.Config) { c.GrokChatTransport = "auto" }),
		withEmulator(func(e *grokweb.Config) { e.RefuseUpgrade = true }))
	c := g.client(userKey)
	for i := range 4 {
		chatTurn(t, c, []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello " + string(rune('a'+i)))})
	}
	if n := len(g.upstreamChats(0)); n != 4 {
		t.Errorf("REST chats = %d; want 4", n)
	}
	// Two sessions: at most one refused upgrade each.
	if n := len(g.Emu.GatewaySessions()); n < 1 || n > 2 {
		t.Errorf("upgrade attempts = %d; want one or two (one per session)", n)
	}
}
