package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

func stringReader(s string) io.Reader { return strings.NewReader(s) }

// tally counts client outcomes by kind. It is safe for concurrent use.
type tally struct {
	mu      sync.Mutex // guards the fields below
	byKind  map[string]int64
	served  int64
	admits  int64 // requests past authentication and limits
	unknown int64 // transport errors: admission not known
}

func newTally() *tally { return &tally{byKind: make(map[string]int64)} }

// rejectedCodes are the error codes of requests that the gateway rejects
// before admitting them, so such requests leave no audit row.
var rejectedCodes = []string{
	"missing_api_key", "invalid_api_key", "inactive_user", "too_many_auth_failures", "auth_busy",
	"rate_limit_exceeded", "concurrency_limit_exceeded", "rate_limiter_unavailable",
	"server_overloaded", "audit_unavailable", "ip_not_allowed", "too_many_headers", "headers_too_large",
}

func (t *tally) add(kind string, served, admitted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byKind[kind]++
	if served {
		t.served++
	}
	if admitted {
		t.admits++
	}
}

func (t *tally) transportError() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byKind["transport_error"]++
	t.unknown++
}

func (t *tally) admitted() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.admits
}

// runClients runs n clients until deadline, each picking a behaviour per
// request.
func runClients(url string, n int, deadline time.Time, t *tally) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				oneRequest(client, url, t)
			}
		}()
	}
	wg.Wait()
	client.CloseIdleConnections()
}

func oneRequest(client *http.Client, url string, t *tally) {
	key, body, stream, impatient := clientKey, chatBody(false), false, false
	switch p := rand.IntN(100); {
	case p < 45:
		body, stream = chatBody(true), true
	case p < 80:
	case p < 90:
		body, stream, impatient = chatBody(true), true, true
	case p < 97:
		body = `{"model":"grok-3","messages":[{"role":"user","content":`
	default:
		key = "soak-wrong-key"
	}

	req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", stringReader(body))
	if err != nil {
		t.transportError()
		return
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		t.transportError()
		return
	}
	defer res.Body.Close()

	if res.StatusCode != http.StatusOK {
		code := errorCode(res.Body)
		t.add(fmt.Sprintf("%d %s", res.StatusCode, code), false, !slices.Contains(rejectedCodes, code))
		return
	}

	switch {
	case impatient:
		bufio.NewReader(res.Body).ReadString('\n')
		t.add("client_cancel", false, true)
	case stream:
		b, err := io.ReadAll(res.Body)
		if err != nil || !strings.Contains(string(b), "data: [DONE]") {
			t.add("stream_cut", false, true)
			return
		}
		t.add("200 stream", true, true)
	default:
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			t.add("body_cut", false, true)
			return
		}
		t.add("200", true, true)
	}
}

func chatBody(stream bool) string {
	return fmt.Sprintf(`{"model":"grok-3","stream":%t,"messages":[{"role":"user","content":"soak %d"}]}`, stream, rand.IntN(1000))
}

func errorCode(r io.Reader) string {
	var e struct {
		Error struct {
			Code *string `json:"code"`
		} `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 64<<10)).Decode(&e); err != nil || e.Error.Code == nil {
		return "no_code"
	}
	return *e.Error.Code
}

// injectFaults sets a new upstream fault every period until deadline: 429
// storms over every account, 5xx, streams cut or failed mid-way, and a slow
// first byte. It returns a function that stops it and waits.
func injectFaults(emu *grokweb.Server, accounts []grokweb.Account, every time.Duration, deadline time.Time) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			emu.ClearFaults()
			one := accounts[rand.IntN(len(accounts))].SSO
			switch rand.IntN(6) {
			case 0:
				for _, a := range accounts {
					emu.SetFault(a.SSO, grokweb.Fault{Kind: grokweb.FaultRateLimited, Times: 3, RetryAfter: time.Second})
				}
			case 1:
				emu.SetFault(one, grokweb.Fault{Kind: grokweb.FaultServerError, Times: 5, Status: 502})
			case 2:
				emu.SetFault(one, grokweb.Fault{Kind: grokweb.FaultCut, Times: 5, AfterFrames: 3})
			case 3:
				emu.SetFault(one, grokweb.Fault{Kind: grokweb.FaultErrorFrame, Times: 5, AfterFrames: 2})
			case 4:
				emu.SetFault(one, grokweb.Fault{Kind: grokweb.FaultSlowFirstByte, Times: 3, Delay: 2 * time.Second})
			}
		}
	}()
	return func() { close(stop); <-done }
}

// sampler records memory and goroutine peaks. It is safe for concurrent
// use.
type sampler struct {
	mu                 sync.Mutex // guards the fields below
	startGoroutines    int
	endGoroutines      int
	peakGoroutines     int
	peakHeapBytes      uint64
	peakSysBytes       uint64
	startHeap, endHeap uint64
	samples            int
}

func newSampler() *sampler { return &sampler{} }

func (s *sampler) sample() (goroutines int, heap uint64) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	n := runtime.NumGoroutine()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	s.peakGoroutines = max(s.peakGoroutines, n)
	s.peakHeapBytes = max(s.peakHeapBytes, m.HeapInuse)
	s.peakSysBytes = max(s.peakSysBytes, m.Sys)
	return n, m.HeapInuse
}

// run samples every period; the returned function takes a last sample
// after a garbage collection and stops.
func (s *sampler) run(every time.Duration) func() {
	runtime.GC()
	s.startGoroutines, s.startHeap = s.sample()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		runtime.GC()
		s.endGoroutines, s.endHeap = s.sample()
	}
}

func report(out io.Writer, o options, t *tally, s *sampler, rows int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var total int64
	kinds := make([]string, 0, len(t.byKind))
	for k, n := range t.byKind {
		kinds = append(kinds, k)
		total += n
	}
	slices.Sort(kinds)

	fmt.Fprintf(out, "soak: %s, %d clients, %d sessions\n", o.duration, o.clients, o.sessions)
	fmt.Fprintf(out, "requests sent:      %d\n", total)
	fmt.Fprintf(out, "requests served:    %d\n", t.served)
	fmt.Fprintln(out, "outcomes by kind:")
	for _, k := range kinds {
		fmt.Fprintf(out, "  %-40s %d\n", k, t.byKind[k])
	}

	match := "match"
	if rows != t.admits {
		match = "MISMATCH"
	}
	fmt.Fprintf(out, "admitted requests:  %d\n", t.admits)
	fmt.Fprintf(out, "audit rows:         %d (%s)\n", rows, match)
	if t.unknown > 0 {
		fmt.Fprintf(out, "transport errors:   %d (admission unknown)\n", t.unknown)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(out, "goroutines:         start %d, peak %d, end %d\n", s.startGoroutines, s.peakGoroutines, s.endGoroutines)
	fmt.Fprintf(out, "heap in use:        start %d MiB, peak %d MiB, end %d MiB\n",
		s.startHeap>>20, s.peakHeapBytes>>20, s.endHeap>>20)
	fmt.Fprintf(out, "memory from the OS: peak %d MiB\n", s.peakSysBytes>>20)
}
