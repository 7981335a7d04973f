package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNodeClient drives the gateway with the official openai npm package.
// .ci/run installs it; elsewhere run `npm ci` in test/node first.
func TestNodeClient(t *testing.T) {
	dir, err := filepath.Abs("../node")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat(filepath.Join(dir, "node_modules", "openai")); err != nil || statErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node and test/node/node_modules are required under CI (node: %v, module: %v)", err, statErr)
		}
		t.Skip("node or the openai npm package is missing; run npm ci in test/node")
	}
	g := startGateway(t, sqliteStore)
	cmd := exec.Command(node, "chat.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GATEWAY_URL="+g.URL, "GATEWAY_KEY="+userKey)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node client: %v\n%s", err, stderr)
	}
	var got struct {
		Completion struct {
			Object, Model, Content string
			FinishReason           string `json:"finish_reason"`
			ID                     string `json:"id"`
			Usage                  struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		Stream struct {
			IDs       []string `json:"ids"`
			Text      string
			Chunks    int
			Finish    string
			FirstRole string `json:"first_role"`
			Usage     *struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		Error *struct {
			Status int
			Code   string
			Param  string
			Type   string
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node output: %v: %s", err, out)
	}
	c := got.Completion
	if c.Object != "chat.completion" || c.Model != "grok-3" || !strings.Contains(c.Content, "Node asks about lighthouses.") {
		t.Errorf("completion: %+v", c)
	}
	s := got.Stream
	if len(s.IDs) != 1 || s.FirstRole != "assistant" || s.Finish != "stop" || s.Chunks < 20 ||
		!strings.Contains(s.Text, "Node streams about ferries.") || s.Usage == nil || s.Usage.CompletionTokens <= 0 {
		t.Errorf("stream: %+v", s)
	}
	if got.Error == nil || got.Error.Status != 404 || got.Error.Code != "model_not_found" || got.Error.Param != "model" {
		t.Errorf("error: %+v", got.Error)
	}
	g.waitGenerations(3)
}
