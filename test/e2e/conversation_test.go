package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/tokenizer"
)

// upstreamChat is one chat request the emulator received.
type upstreamChat struct {
	Path           string
	ConversationID string // empty for a new conversation
	Message        string
	Parent         string
	Account        string
}

// upstreamChats returns the chat requests the emulator received after the
// first skip requests.
func (g *gateway) upstreamChats(skip int) []upstreamChat {
	var out []upstreamChat
	for _, r := range g.Emu.Requests()[skip:] {
		const prefix = "/rest/app-chat/conversations/"
		if r.Method != "POST" || !strings.HasPrefix(r.Path, prefix) {
			continue
		}
		var body struct {
			Message          string `json:"message"`
			ParentResponseID string `json:"parentResponseId"`
		}
		json.Unmarshal(r.Body, &body)
		c := upstreamChat{Path: r.Path, Message: body.Message, Parent: body.ParentResponseID, Account: r.Account}
		if id, ok := strings.CutSuffix(strings.TrimPrefix(r.Path, prefix), "/responses"); ok {
			c.ConversationID = id
		}
		out = append(out, c)
	}
	return out
}

// chatTurn sends history through the SDK and returns the answer text.
func chatTurn(t *testing.T, c openai.Client, history []openai.ChatCompletionMessageParamUnion) string {
	t.Helper()
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "grok-3", Messages: history})
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	return res.Choices[0].Message.Content
}

func TestConversationFiveTurns(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		g := startGateway(t, kind)
		c := g.client(userKey)
		skip := len(g.Emu.Requests())

		history := []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You answer briefly.")}
		for turn := 1; turn <= 5; turn++ {
			question := fmt.Sprintf("Question number %d about the harbour?", turn)
			history = append(history, openai.UserMessage(question))
			answer := chatTurn(t, c, history)
			// The emulator numbers the turns of its own conversation, so
			// the number shows the upstream kept the context.
			if want := fmt.Sprintf("turn %d.", turn); !strings.Contains(answer, want) {
				t.Errorf("turn %d answer lacks %q: %.80q", turn, want, answer)
			}
			history = append(history, openai.AssistantMessage(answer))
		}

		chats := g.upstreamChats(skip)
		if len(chats) != 5 {
			t.Fatalf("upstream chat requests: %d; want 5", len(chats))
		}
		if chats[0].ConversationID != "" || !strings.Contains(chats[0].Message, "You answer briefly.") {
			t.Errorf("first turn = %+v; want a new conversation with the system prompt", chats[0])
		}
		// Ten stored turns below show that the conversation the follow-ups
		// name is the one the first turn created.
		id := chats[1].ConversationID
		for i, ch := range chats[1:] {
			turn := i + 2
			if ch.ConversationID != id || !strings.HasSuffix(ch.Path, "/responses") || ch.Parent == "" {
				t.Errorf("turn %d went to %s (parent %q); want a follow-up in %s", turn, ch.Path, ch.Parent, id)
			}
			if want := fmt.Sprintf("Question number %d about the harbour?", turn); ch.Message != want {
				t.Errorf("turn %d sent %.80q; want only the new turn %q", turn, ch.Message, want)
			}
			if ch.Account != chats[0].Account {
				t.Errorf("turn %d ran on account %q; want the owner %q", turn, ch.Account, chats[0].Account)
			}
		}
		turns, ok := g.Emu.Conversation(id)
		if !ok || len(turns) != 10 {
			t.Fatalf("emulator conversation has %d turns (found %v); want 10", len(turns), ok)
		}
		if turns[8].Message != "Question number 5 about the harbour?" || turns[8].ParentResponseID != turns[7].ResponseID {
			t.Errorf("fifth question = %+v; want it chained to the fourth answer", turns[8])
		}
		g.waitGenerations(5)
	})
}

// TestConversationStreamedTurns checks that streamed answers continue the
// upstream conversation too. Each next turn goes out as soon as the stream
// ends, which works because the gateway saves the conversation before [DONE].
func TestConversationStreamedTurns(t *testing.T) {
	g := startGateway(t, sqliteStore)
	c := g.client(userKey)
	skip := len(g.Emu.Requests())

	history := []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You answer briefly.")}
	for turn := 1; turn <= 3; turn++ {
		history = append(history, openai.UserMessage(fmt.Sprintf("Streamed question %d?", turn)))
		stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "grok-3", Messages: history})
		var answer strings.Builder
		for stream.Next() {
			if ch := stream.Current(); len(ch.Choices) > 0 {
				answer.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("turn %d: %v", turn, err)
		}
		if want := fmt.Sprintf("turn %d.", turn); !strings.Contains(answer.String(), want) {
			t.Errorf("turn %d answer lacks %q: %.80q", turn, want, answer.String())
		}
		history = append(history, openai.AssistantMessage(answer.String()))
	}

	chats := g.upstreamChats(skip)
	if len(chats) != 3 {
		t.Fatalf("upstream chat requests: %d; want 3", len(chats))
	}
	for i, ch := range chats[1:] {
		if ch.ConversationID == "" || ch.ConversationID != chats[1].ConversationID {
			t.Errorf("turn %d went to %s; want a follow-up of the first conversation", i+2, ch.Path)
		}
	}
}

func TestConversationEditedHistoryStartsOver(t *testing.T) {
	g := startGateway(t, sqliteStore)
	c := g.client(userKey)
	first := chatTurn(t, c, []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Name a harbour.")})
	skip := len(g.Emu.Requests())

	tests := []struct {
		name    string
		history []openai.ChatCompletionMessageParamUnion
	}{
		{"edited question", []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage("Name a river."), openai.AssistantMessage(first), openai.UserMessage("Why that one?")}},
		{"edited answer", []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage("Name a harbour."), openai.AssistantMessage(first + " (edited)"), openai.UserMessage("Why that one?")}},
		{"added system prompt", []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("Be terse."), openai.UserMessage("Name a harbour."), openai.AssistantMessage(first), openai.UserMessage("Why that one?")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(g.Emu.Requests())
			answer := chatTurn(t, c, tt.history)
			if !strings.Contains(answer, "turn 1.") {
				t.Errorf("answer %.60q; want the first turn of a new conversation", answer)
			}
			chats := g.upstreamChats(before)
			if len(chats) != 1 || chats[0].ConversationID != "" {
				t.Fatalf("upstream chats %+v; want one new conversation", chats)
			}
			if !strings.Contains(chats[0].Message, "Why that one?") || !strings.Contains(chats[0].Message, "[assistant]") {
				t.Errorf("new conversation sent %.120q; want the whole history", chats[0].Message)
			}
		})
	}
	if n := len(g.upstreamChats(skip)); n != len(tests) {
		t.Errorf("upstream chats after the first turn: %d; want %d", n, len(tests))
	}
}

func TestConversationNeverCrossesUsers(t *testing.T) {
	g := startGateway(t, sqliteStore)
	alice, bob := g.client(userKey), g.client(userKey2)
	opening := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Describe the harbour at dawn.")}

	// The emulator answers both users alike, so their histories are equal.
	aliceAnswer := chatTurn(t, alice, opening)
	next := append(opening, openai.AssistantMessage(aliceAnswer), openai.UserMessage("And at dusk?"))

	// Bob sends Alice's history without having had that conversation.
	before := len(g.Emu.Requests())
	chatTurn(t, bob, next)
	chats := g.upstreamChats(before)
	if len(chats) != 1 || chats[0].ConversationID != "" {
		t.Fatalf("bob's request went upstream as %+v; want a new conversation", chats)
	}

	// Bob's own first turn, then the same continuation from each user:
	// each goes to that user's own upstream conversation.
	bobAnswer := chatTurn(t, bob, opening)
	if bobAnswer != aliceAnswer {
		t.Fatalf("the emulator answered the users differently: %.60q vs %.60q", bobAnswer, aliceAnswer)
	}
	before = len(g.Emu.Requests())
	chatTurn(t, alice, next)
	chatTurn(t, bob, next)
	chats = g.upstreamChats(before)
	if len(chats) != 2 {
		t.Fatalf("upstream chats: %d; want 2", len(chats))
	}
	a, b := chats[0], chats[1]
	if a.ConversationID == "" || b.ConversationID == "" {
		t.Fatalf("continuations %+v and %+v; want both to be follow-ups", a, b)
	}
	if a.ConversationID == b.ConversationID {
		t.Errorf("both users continued upstream conversation %s", a.ConversationID)
	}
}

func TestConversationFallsBackWhenOwnerUnusable(t *testing.T) {
	g := startGateway(t, sqliteStore)
	c := g.client(userKey)
	opening := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Name a harbour.")}
	answer := chatTurn(t, c, opening)
	g.waitGenerations(1)
	rows, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{})
	if err != nil || len(rows) != 1 || rows[0].SessionID == "" {
		t.Fatalf("generations: %+v %v", rows, err)
	}
	owner := rows[0].SessionID
	if _, err := g.App.Pool.Quarantine(context.Background(), owner, "test"); err != nil {
		t.Fatalf("quarantine owner: %v", err)
	}

	before := len(g.Emu.Requests())
	next := append(opening, openai.AssistantMessage(answer), openai.UserMessage("Why that one?"))
	if got := chatTurn(t, c, next); !strings.Contains(got, "turn 1.") {
		t.Errorf("answer %.60q; want the first turn of a new conversation", got)
	}
	chats := g.upstreamChats(before)
	if len(chats) != 1 || chats[0].ConversationID != "" || !strings.Contains(chats[0].Message, "Name a harbour.") {
		t.Fatalf("upstream chats %+v; want the whole history as a new conversation", chats)
	}
	if first := g.upstreamChats(0)[0]; chats[0].Account == first.Account {
		t.Errorf("the fallback ran on account %q, which holds the quarantined owner session", first.Account)
	}
}

func TestGrokUsageCountsTokens(t *testing.T) {
	g := startGateway(t, sqliteStore)
	c := g.client(userKey)
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "grok-3",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Zählen Sie die Boote im Hafen, bitte: 一二三四五")}})
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	g.waitGenerations(1)
	rows, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{})
	if err != nil || len(rows) != 1 {
		t.Fatalf("generations: %d %v", len(rows), err)
	}
	row := rows[0]
	if !row.TokensEstimated {
		t.Error("the row does not mark its token counts as estimates")
	}
	if want := tokenizer.Count(row.Prompt); row.PromptTokens != want || int(res.Usage.PromptTokens) != want {
		t.Errorf("prompt tokens: row %d, response %d; want %d", row.PromptTokens, res.Usage.PromptTokens, want)
	}
	if want := tokenizer.Count(res.Choices[0].Message.Content); row.CompletionTokens != want || int(res.Usage.CompletionTokens) != want {
		t.Errorf("completion tokens: row %d, response %d; want %d", row.CompletionTokens, res.Usage.CompletionTokens, want)
	}
}

// TestEraseDeletesUpstreamConversations checks that a user's erasure also
// removes the conversations the gateway kept on the Grok web account.
func TestEraseDeletesUpstreamConversations(t *testing.T) {
	g := startGateway(t, sqliteStore)
	_, key := g.createUser(map[string]any{"name": "forgetful"})
	c := g.client(key)
	skip := len(g.Emu.Requests())
	history := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Keep this between us.")}
	history = append(history, openai.AssistantMessage(chatTurn(t, c, history)))
	history = append(history, openai.UserMessage("And this too."))
	chatTurn(t, c, history)

	chats := g.upstreamChats(skip)
	if len(chats) != 2 || chats[1].ConversationID == "" {
		t.Fatalf("upstream chats %+v; want a new conversation and a follow-up", chats)
	}
	id := chats[1].ConversationID
	if _, ok := g.Emu.Conversation(id); !ok {
		t.Fatalf("the emulator holds no conversation %s before the erasure", id)
	}

	g.waitGenerations(2)
	res := g.do(http.MethodDelete, "/v1/me/data", key, nil)
	if res.Status != http.StatusOK {
		t.Fatalf("erase: %d %s", res.Status, res.Body)
	}
	body := res.json(t)
	if body["upstream_conversations_deleted"] != float64(1) || body["upstream_conversations_failed"] != float64(0) {
		t.Errorf("erasure counts: %s; want one upstream conversation deleted", res.Body)
	}
	if _, ok := g.Emu.Conversation(id); ok {
		t.Errorf("conversation %s is still on the upstream account after the erasure", id)
	}
}
