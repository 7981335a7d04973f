package grokweb_test

import (
	"testing"

	emulator "github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

func TestDeleteConversation(t *testing.T) {
	emu, c := startEmulator(t, emulator.TierSuper)
	s, err := c.Chat(ctx(t), emuCred(), upstream.ChatRequest{Model: "fast",
		Messages: []upstream.Message{{Role: "user", Text: "Remember the tide tables."}}})
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	events, err := readAll(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	id := events[0].ConversationID
	if _, ok := emu.Conversation(id); !ok {
		t.Fatalf("the emulator holds no conversation %q", id)
	}

	if err := c.DeleteConversation(ctx(t), emuCred(), id); err != nil {
		t.Fatalf("DeleteConversation: %v", err)
	}
	if _, ok := emu.Conversation(id); ok {
		t.Errorf("conversation %q still exists after the delete", id)
	}
	err = c.DeleteConversation(ctx(t), emuCred(), id)
	if got := upstream.OutcomeOf(err); got != upstream.OutcomeRejectedRequest {
		t.Errorf("second delete: outcome %q (%v); want rejected_request for a missing conversation", got, err)
	}
	if err := c.DeleteConversation(ctx(t), emuCred(), ""); upstream.OutcomeOf(err) != upstream.OutcomeRejectedRequest {
		t.Errorf("empty id: %v; want rejected_request", err)
	}
}
