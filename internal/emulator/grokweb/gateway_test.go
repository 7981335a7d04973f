package grokweb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

// dialGateway upgrades with the given Cookie header and returns the
// connection, or the status of the refused upgrade.
func dialGateway(t *testing.T, url, cookie string) (*websocket.Conn, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws/mgw/?uid=u-1",
		&websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {cookie}}})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { conn.CloseNow() })
	return conn, http.StatusSwitchingProtocols
}

func sendEvent(t *testing.T, conn *websocket.Conn, ev map[string]any) {
	t.Helper()
	data, _ := json.Marshal(map[string]any{"event": ev})
	if err := conn.Write(context.Background(), websocket.MessageText, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readUntil reads gateway messages until one of type want and returns
// the types seen on the way, want included.
func readUntil(t *testing.T, conn *websocket.Conn, want string) ([]string, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var types []string
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("read (seen %v): %v", types, err)
		}
		var msg map[string]any
		json.Unmarshal(data, &msg)
		types = append(types, msg["type"].(string))
		if msg["type"] == want {
			return types, msg["event"].(map[string]any)
		}
	}
}

func TestGatewayChat(t *testing.T) {
	var logs bytes.Buffer
	emu, ts := startEmulator(t, grokweb.Config{Chunks: 3, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	conn, status := dialGateway(t, ts.URL, "sso="+ssoA+"; sso-rw="+ssoA)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade status = %d; want 101", status)
	}
	sendEvent(t, conn, map[string]any{"type": "session.create", "event_id": "evt_init_1",
		"session": map[string]any{"model": "expert", "x_grok": map[string]any{"is_temporary": true}}})
	_, attached := readUntil(t, conn, "conversation.attached")
	convID := attached["conversation"].(map[string]any)["id"].(string)

	sendEvent(t, conn, map[string]any{"type": "conversation.item.create", "item": map[string]any{
		"type": "message", "role": "user",
		"x_grok": map[string]any{"input_chunks": []any{map[string]any{"text": map[string]any{"text": "Say hi"}}}},
	}})
	sendEvent(t, conn, map[string]any{"type": "response.create"})
	types, done := readUntil(t, conn, "response.done")
	if types[0] != "response.chunk" || len(types) < 4 {
		t.Errorf("message types = %v; want chunks then response.done", types)
	}
	resp := done["response"].(map[string]any)
	if resp["status"] != "completed" || resp["id"] == "" {
		t.Errorf("response.done = %v; want a completed response with an id", resp)
	}
	turns, ok := emu.Conversation(convID)
	if !ok || len(turns) != 2 || turns[1].ResponseID != resp["id"] || turns[0].Message != "Say hi" {
		t.Errorf("conversation %q = %+v; want the prompt and the answer", convID, turns)
	}
	if n := emu.ChatCount(ssoA); n != 1 {
		t.Errorf("chat count = %d; want 1", n)
	}
	if !strings.Contains(logs.String(), "websocket upgrade") || !strings.Contains(logs.String(), "uid=u-1") {
		t.Errorf("log has no upgrade line with the uid:\n%s", logs.String())
	}
}

func TestGatewayUpgradeChecks(t *testing.T) {
	t.Run("sso-rw required", func(t *testing.T) {
		_, ts := startEmulator(t, grokweb.Config{RequireSSORW: true})
		if _, status := dialGateway(t, ts.URL, "sso="+ssoA); status != http.StatusForbidden {
			t.Errorf("upgrade without sso-rw: status %d; want 403", status)
		}
		if _, status := dialGateway(t, ts.URL, "sso="+ssoA+"; sso-rw="+ssoA); status != http.StatusSwitchingProtocols {
			t.Errorf("upgrade with sso-rw: status %d; want 101", status)
		}
	})
	t.Run("unknown login", func(t *testing.T) {
		_, ts := startEmulator(t, grokweb.Config{})
		if _, status := dialGateway(t, ts.URL, "sso=nobody"); status != http.StatusUnauthorized {
			t.Errorf("status %d; want 401", status)
		}
	})
	t.Run("refused", func(t *testing.T) {
		emu, ts := startEmulator(t, grokweb.Config{RefuseUpgrade: true})
		if _, status := dialGateway(t, ts.URL, "sso="+ssoA); status != http.StatusNotFound {
			t.Errorf("status %d; want 404", status)
		}
		if gw := emu.GatewaySessions(); len(gw) != 1 || gw[0].Upgraded {
			t.Errorf("gateway sessions = %+v; want one refused upgrade", gw)
		}
	})
	t.Run("fault answers the upgrade", func(t *testing.T) {
		emu, ts := startEmulator(t, grokweb.Config{})
		emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultRateLimited, Times: 1})
		if _, status := dialGateway(t, ts.URL, "sso="+ssoA); status != http.StatusTooManyRequests {
			t.Errorf("status %d; want 429", status)
		}
	})
}

func TestRESTChatRefused(t *testing.T) {
	emu, ts := startEmulator(t, grokweb.Config{})
	emu.SetRefuseRESTChat(true)
	resp := call(t, ts, http.MethodPost, "/rest/app-chat/conversations/new", ssoA, newChat("fast", "hi"))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d; want 404", resp.StatusCode)
	}
}
