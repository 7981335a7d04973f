package grokweb_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	emulator "github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
)

func TestCheckUsableSessionSpendsNoChat(t *testing.T) {
	emu, c := startTransport(t, emulator.Config{}, grokweb.TransportAuto, nil)

	r, err := c.Check(ctx(t), emuCred())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !r.Login || r.AccountID == "" || r.Tier != grokweb.TierSuper {
		t.Errorf("login, account, tier = %v, %q, %q; want true, an id, super", r.Login, r.AccountID, r.Tier)
	}
	if q := r.Quota["fast"]; q.Total != 140 || q.Remaining != 140 || q.WindowSeconds != 7200 {
		t.Errorf("fast quota = %+v; want 140 of 140 per 7200 s", q)
	}
	for _, tr := range []string{grokweb.TransportREST, grokweb.TransportWS} {
		if got := r.Transports[tr]; got.Status != grokweb.CheckOK {
			t.Errorf("transport %s = %+v; want ok", tr, got)
		}
	}
	for _, s := range []string{grokweb.SelectorModeID, grokweb.SelectorModelMode, grokweb.SelectorModelName} {
		if got := r.Selectors[s]; got.Status != grokweb.CheckOK {
			t.Errorf("selector %s = %+v; want ok", s, got)
		}
	}
	if !r.Usable || len(r.Problems) != 0 || r.Transport != grokweb.TransportAuto || r.Selector != grokweb.SelectorModeID {
		t.Errorf("usable, problems, transport, selector = %v, %q, %q, %q; want true, none, auto, modeId",
			r.Usable, r.Problems, r.Transport, r.Selector)
	}

	if n := emu.ChatCount(emuSSO); n != 0 {
		t.Errorf("chat count = %d; want 0", n)
	}
	again, err := c.Check(ctx(t), emuCred())
	if err != nil {
		t.Fatalf("second Check: %v", err)
	}
	for mode, q := range r.Quota {
		if again.Quota[mode] != q {
			t.Errorf("quota of %s changed from %+v to %+v", mode, q, again.Quota[mode])
		}
	}
	if len(r.Quota) == 0 {
		t.Error("no quota reported")
	}
	sessions := emu.GatewaySessions()
	if len(sessions) != 2 {
		t.Fatalf("gateway sessions = %d; want one per check", len(sessions))
	}
	waitFor(t, "the gateway connection to close", func() bool { return emu.GatewaySessions()[0].Ended })
	g := emu.GatewaySessions()[0]
	if !g.Upgraded || g.Completed || g.CloseStatus != 1000 || g.Model != "fast" {
		t.Errorf("gateway session = %+v; want an upgraded fast session closed normally without an answer", g)
	}
}

func TestCheckUpgradeRefused(t *testing.T) {
	emu, c := startTransport(t, emulator.Config{}, grokweb.TransportAuto, nil)
	emu.SetRefuseUpgrade(true)

	r, err := c.Check(ctx(t), emuCred())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got := r.Transports[grokweb.TransportWS]; got.Status != grokweb.CheckFailed || !strings.Contains(got.Detail, "404") {
		t.Errorf("ws = %+v; want failed with the 404", got)
	}
	if got := r.Transports[grokweb.TransportREST]; got.Status != grokweb.CheckOK {
		t.Errorf("rest = %+v; want ok", got)
	}
	if !r.Usable {
		t.Errorf("usable = false (%q); want true on auto with REST working", r.Problems)
	}

	// A client bound to the gateway cannot use this session.
	emu2, c2 := startTransport(t, emulator.Config{RefuseUpgrade: true}, grokweb.TransportWS, nil)
	r, err = c2.Check(ctx(t), emuCred())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if r.Usable || !hasProblem(r.Problems, "transport ws") {
		t.Errorf("usable, problems = %v, %q; want false naming the ws transport", r.Usable, r.Problems)
	}
	if emu.ChatCount(emuSSO)+emu2.ChatCount(emuSSO) != 0 {
		t.Errorf("chat counts = %d, %d; want 0", emu.ChatCount(emuSSO), emu2.ChatCount(emuSSO))
	}
}

func TestCheckRESTChatRefused(t *testing.T) {
	emu, c := startTransport(t, emulator.Config{RefuseRESTChat: true}, grokweb.TransportREST, nil)

	r, err := c.Check(ctx(t), emuCred())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got := r.Transports[grokweb.TransportREST]; got.Status != grokweb.CheckFailed {
		t.Errorf("rest = %+v; want failed", got)
	}
	if got := r.Transports[grokweb.TransportWS]; got.Status != grokweb.CheckOK {
		t.Errorf("ws = %+v; want ok", got)
	}
	if r.Usable || !hasProblem(r.Problems, "transport rest") {
		t.Errorf("usable, problems = %v, %q; want false naming the rest transport", r.Usable, r.Problems)
	}
	if n := emu.ChatCount(emuSSO); n != 0 {
		t.Errorf("chat count = %d; want 0", n)
	}
}

func TestCheckDeadLogin(t *testing.T) {
	emu, c := startTransport(t, emulator.Config{}, grokweb.TransportAuto, nil)
	emu.RemoveAccount(emuSSO)

	r, err := c.Check(ctx(t), emuCred())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if r.Login || r.Usable || !hasProblem(r.Problems, "unauthorized") {
		t.Errorf("login, usable, problems = %v, %v, %q; want false, false, an unauthorized login", r.Login, r.Usable, r.Problems)
	}
	if len(r.Transports) != 0 || len(r.Quota) != 0 {
		t.Errorf("transports, quota = %v, %v; want none checked after a dead login", r.Transports, r.Quota)
	}
	data, _ := json.Marshal(r)
	if bytes.Contains(data, []byte(emuSSO)) {
		t.Errorf("report carries the cookie: %s", data)
	}
}

func TestCheckRefusedSelector(t *testing.T) {
	emu := emulator.New(emulator.Config{Accounts: []emulator.Account{{SSO: emuSSO, Tier: emulator.TierBasic}}})
	// A server that knows only the modeId period refuses modelMode bodies.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/rest/rate-limits" {
			body, _ := io.ReadAll(r.Body)
			if bytes.Contains(body, []byte("modelMode")) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `{"error":{"code":3,"message":"unknown field modelMode","details":[]}}`)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		emu.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c := grokweb.New(grokweb.Config{BaseURL: srv.URL, HTTPClient: srv.Client(), Selector: grokweb.SelectorModelMode})

	r, err := c.Check(ctx(t), emuCred())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got := r.Selectors[grokweb.SelectorModelMode]; got.Status != grokweb.CheckFailed {
		t.Errorf("modelName+modelMode = %+v; want failed", got)
	}
	if got := r.Selectors[grokweb.SelectorModeID]; got.Status != grokweb.CheckOK {
		t.Errorf("modeId = %+v; want ok", got)
	}
	if r.Tier != grokweb.TierBasic {
		t.Errorf("tier = %q; want basic", r.Tier)
	}
	if r.Usable || !hasProblem(r.Problems, "selector") {
		t.Errorf("usable, problems = %v, %q; want false naming the selector", r.Usable, r.Problems)
	}
}

func hasProblem(problems []string, part string) bool {
	for _, p := range problems {
		if strings.Contains(p, part) {
			return true
		}
	}
	return false
}
