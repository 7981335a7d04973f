package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

// buildCommands compiles the gateway and the emulator into dir.
func buildCommands(t *testing.T, dir string) (gateway, emulator string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", dir, "../../cmd/grokproxy", "../../cmd/grokweb-emulator")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "grokproxy"), filepath.Join(dir, "grokweb-emulator")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// process is a started command whose stderr is collected.
type process struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

func startProcess(t *testing.T, dir string, env []string, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("%s exited with %v:\n%s", filepath.Base(p.cmd.Path), err, p.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not stop on SIGTERM", filepath.Base(p.cmd.Path))
	}
}

func waitHTTP(t *testing.T, url string, p *process) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered 200; output:\n%s", url, p.stderr.String())
}

// waitListening waits until p has logged that it listens, which the
// gateway does after printing a new admin key, so that the key's absence
// in the output is a finding and not a lag of the pipe.
func waitListening(t *testing.T, p *process) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(p.stderr.String(), `"msg":"listening"`) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the gateway never logged that it listens; output:\n%s", p.stderr.String())
}

var adminKeyLine = regexp.MustCompile(`(?m)^\s+(gp_[0-9a-f]{12}_[0-9A-Za-z]{40})\s*$`)

// TestCommands runs the built binaries the way the README tells a new user
// to: the emulator with two accounts, the gateway on its SQLite default.
func TestCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	bin := t.TempDir()
	gw, emu := buildCommands(t, bin)
	work := t.TempDir()

	emuPort := freePort(t)
	em := startProcess(t, work, nil, emu, "-listen", fmt.Sprintf("127.0.0.1:%d", emuPort), "-accounts", ssoA+","+ssoB)
	emuURL := fmt.Sprintf("http://127.0.0.1:%d", emuPort)

	port := freePort(t)
	env := []string{fmt.Sprintf("PORT=%d", port), "HOST=127.0.0.1", "GROK_BASE_URL=" + emuURL, "GROK_CHAT_TRANSPORT=rest",
		"API_PASSWORD=" + userKey}
	gp := startProcess(t, work, env, gw, "serve")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, base+"/livez", gp)
	waitListening(t, gp)

	keys := adminKeyLine.FindAllStringSubmatch(gp.stderr.String(), -1)
	if len(keys) != 1 {
		t.Fatalf("want the admin key printed once, found %d times in:\n%s", len(keys), gp.stderr.String())
	}
	g := &gateway{t: t, URL: base, AdminKey: keys[0][1]}
	for _, sso := range []string{ssoA, ssoB} {
		res := g.admin(http.MethodPost, "/admin/sessions", map[string]any{"cookie_text": "sso=" + sso, "provider": "grok"})
		if res.Status != http.StatusCreated {
			t.Fatalf("add session: %d %s", res.Status, res.Body)
		}
	}
	res := g.do(http.MethodPost, "/v1/chat/completions", userKey, chatBody("Hello from the binary test.", false))
	if res.Status != http.StatusOK || !strings.Contains(string(res.Body), "Hello from the binary test.") {
		t.Fatalf("chat: %d %s", res.Status, res.Body)
	}

	// Another process reads the SQLite file while serve runs.
	st, err := sqlite.Open(context.Background(), filepath.Join(work, "grokproxy.db"), observe.NewLogger(io.Discard, "error", "json"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var n int64
	for time.Now().Before(deadline) {
		if n, err = st.CountGenerations(context.Background()); err == nil && n == 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	st.Close()
	if n != 1 {
		t.Errorf("generations seen by another process: %d (%v)", n, err)
	}
	if fi, err := os.Stat(filepath.Join(work, "grokproxy.db.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}

	gp.stop(t)
	em.stop(t)
	for _, out := range []string{gp.stderr.String(), em.stderr.String()} {
		for _, s := range []string{ssoA, ssoB, userKey} {
			if strings.Contains(out, s) {
				t.Errorf("a secret appears in a process's output: %.8s…", s)
			}
		}
	}
	if !strings.Contains(em.stderr.String(), "/rest/app-chat/conversations/new") {
		t.Errorf("the emulator logged no request line:\n%s", em.stderr.String())
	}

	// A second start on the same store prints no key.
	gp2 := startProcess(t, work, env, gw, "serve")
	waitHTTP(t, base+"/livez", gp2)
	waitListening(t, gp2)
	if adminKeyLine.MatchString(gp2.stderr.String()) {
		t.Errorf("the second start printed an admin key again")
	}
	gp2.stop(t)
	if strings.Count(gp.stderr.String(), keys[0][1]) != 1 {
		t.Errorf("the admin key was printed more than once")
	}
}
