// Command load sends OpenAI chat requests from many concurrent clients and
// prints one JSON object with what it measured: requests completed,
// requests per second, latency percentiles, time to first token and
// errors. It is the load generator of bench/run.sh.
//
//	load -url http://127.0.0.1:8000 -key KEY -clients 256 -duration 10s -stream
//
// Each client sends one request at a time over its own keep-alive
// connection. Requests that start during -warmup are sent but not
// measured; -ramp spreads the clients' first requests over that time.
// With -requests N each client stops after N requests. With -read-delay
// each client pauses that long after each event of a stream, as a slow
// reader does. When every client has received its first event, load
// writes "all clients streaming" to stderr once.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// options are the command-line flags.
type options struct {
	url       string
	key       string
	model     string
	prompt    string
	clients   int
	duration  time.Duration
	warmup    time.Duration
	ramp      time.Duration
	requests  int
	stream    bool
	readDelay time.Duration
	timeout   time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8000", "origin of the system under test; requests go to /v1/chat/completions")
	flag.StringVar(&o.key, "key", "", "bearer key sent in Authorization")
	flag.StringVar(&o.model, "model", "grok-4-fast-non-reasoning", "model of every request")
	flag.StringVar(&o.prompt, "prompt", "Say hello to the benchmark in a few words.", "user message of every request")
	flag.IntVar(&o.clients, "clients", 32, "concurrent clients")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long clients start new requests after the warm-up, a Go duration")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "time at the start whose requests are not measured, a Go duration")
	flag.DurationVar(&o.ramp, "ramp", 0, "time over which clients start, evenly spread, a Go duration (0: all at once)")
	flag.IntVar(&o.requests, "requests", 0, "requests per client at most (0: until the duration ends)")
	flag.BoolVar(&o.stream, "stream", false, "ask for server-sent events")
	flag.DurationVar(&o.readDelay, "read-delay", 0, "pause before reading each event of a stream, a Go duration")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "deadline of one request, a Go duration")
	flag.Parse()
	if o.clients <= 0 {
		fmt.Fprintln(os.Stderr, "load: -clients must be positive")
		os.Exit(2)
	}
	res, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

// Result is the summary of one run. Durations are in microseconds.
type Result struct {
	Clients int  `json:"clients"`
	Stream  bool `json:"stream"`
	// Total counts every finished request, warm-up included; Measured
	// only those that started after the warm-up.
	Total    int     `json:"total"`
	Measured int     `json:"measured"`
	Errors   int     `json:"errors"`
	Cut      int     `json:"cut"` // streams that ended without [DONE]
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50      float64 `json:"p50_us"`
	P99      float64 `json:"p99_us"`
	Max      float64 `json:"max_us"`
	TTFT50   float64 `json:"ttft_p50_us"`
	TTFT99   float64 `json:"ttft_p99_us"`
	// FirstError is the text of one failure, for the report.
	FirstError string `json:"first_error,omitempty"`
}

// sample is one measured request.
type sample struct {
	latency, ttft time.Duration
}

// tally gathers the samples of all clients.
type tally struct {
	mu       sync.Mutex // guards the fields below
	samples  []sample
	total    int
	errors   int
	cut      int
	firstErr string
}

func (t *tally) add(s sample, measured bool, err error, cut bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total++
	switch {
	case cut:
		t.cut++
	case err != nil:
		t.errors++
	}
	if err != nil && t.firstErr == "" {
		t.firstErr = err.Error()
	}
	if measured && err == nil {
		t.samples = append(t.samples, s)
	}
}

func run(ctx context.Context, o options) (Result, error) {
	body, err := json.Marshal(map[string]any{
		"model":    o.model,
		"messages": []map[string]string{{"role": "user", "content": o.prompt}},
		"stream":   o.stream,
	})
	if err != nil {
		return Result{}, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = o.clients
	transport.MaxIdleConnsPerHost = o.clients
	transport.MaxConnsPerHost = 0
	hc := &http.Client{Transport: transport, Timeout: o.timeout}

	start := time.Now()
	measureFrom := start.Add(o.warmup)
	stopAt := measureFrom.Add(o.duration)
	t := &tally{}
	var started atomic.Int64
	var wg sync.WaitGroup
	for i := range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o.ramp > 0 {
				time.Sleep(time.Duration(int64(o.ramp) * int64(i) / int64(o.clients)))
			}
			c := client{o: o, hc: hc, body: body}
			first := true
			for n := 0; o.requests == 0 || n < o.requests; n++ {
				began := time.Now()
				if !began.Before(stopAt) {
					return
				}
				s, err := c.do(ctx, func() {
					if first && started.Add(1) == int64(o.clients) {
						fmt.Fprintln(os.Stderr, "all clients streaming")
					}
					first = false
				})
				t.add(s, !began.Before(measureFrom), err, errors.Is(err, errCut))
			}
		}()
	}
	wg.Wait()
	end := time.Now()
	return summarize(o, t, measureFrom, stopAt, end), nil
}

func summarize(o options, t *tally, measureFrom, stopAt, end time.Time) Result {
	window := stopAt.Sub(measureFrom)
	if o.requests > 0 {
		// Bounded runs count every request over the whole run.
		window = end.Sub(measureFrom)
	}
	res := Result{Clients: o.clients, Stream: o.stream, Total: t.total, Measured: len(t.samples),
		Errors: t.errors, Cut: t.cut, Seconds: window.Seconds(), FirstError: t.firstErr}
	if window > 0 {
		res.RPS = float64(res.Measured) / window.Seconds()
	}
	lat := make([]time.Duration, len(t.samples))
	ttft := make([]time.Duration, len(t.samples))
	for i, s := range t.samples {
		lat[i], ttft[i] = s.latency, s.ttft
	}
	slices.Sort(lat)
	slices.Sort(ttft)
	res.P50, res.P99, res.Max = micros(lat, 0.50), micros(lat, 0.99), micros(lat, 1)
	res.TTFT50, res.TTFT99 = micros(ttft, 0.50), micros(ttft, 0.99)
	return res
}

// micros returns the q quantile of sorted d in microseconds.
func micros(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	i := min(int(q*float64(len(d))+0.5), len(d)) - 1
	return float64(d[max(i, 0)].Nanoseconds()) / 1e3
}

// errCut marks a stream that ended without [DONE].
var errCut = errors.New("stream ended without [DONE]")

// client sends requests one at a time.
type client struct {
	o    options
	hc   *http.Client
	body []byte
}

// do sends one request and reads the whole response. onFirst runs when
// the first event or the whole JSON body of the response has arrived.
func (c client) do(ctx context.Context, onFirst func()) (sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.o.url+"/v1/chat/completions", bytes.NewReader(c.body))
	if err != nil {
		return sample{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.o.key)
	began := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return sample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return sample{}, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if !c.o.stream {
		return c.readJSON(resp.Body, began, onFirst)
	}
	return c.readStream(resp.Body, began, onFirst)
}

func (c client) readJSON(body io.Reader, began time.Time, onFirst func()) (sample, error) {
	var answer struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(body).Decode(&answer); err != nil {
		return sample{}, fmt.Errorf("decode response: %w", err)
	}
	onFirst()
	if len(answer.Choices) == 0 || answer.Choices[0].Message.Content == "" {
		return sample{}, errors.New("response has no message content")
	}
	d := time.Since(began)
	return sample{latency: d, ttft: d}, nil
}

// readStream reads events until [DONE]. The time to first token is the
// time to the first event that carries delta content.
func (c client) readStream(body io.Reader, began time.Time, onFirst func()) (sample, error) {
	br := bufio.NewReaderSize(body, 4096)
	var s sample
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return sample{}, errCut
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue
		}
		if first {
			onFirst()
			first = false
		}
		if c.o.readDelay > 0 {
			time.Sleep(c.o.readDelay)
		}
		if bytes.HasPrefix(data, []byte("[DONE]")) {
			if s.ttft == 0 {
				return sample{}, errors.New("stream carried no delta content")
			}
			s.latency = time.Since(began)
			return s, nil
		}
		if s.ttft == 0 && hasText(data) {
			s.ttft = time.Since(began)
		}
		if bytes.Contains(data, []byte(`"error"`)) {
			return sample{}, fmt.Errorf("error event: %s", bytes.TrimSpace(data))
		}
	}
}

// hasText reports whether a chunk carries non-empty delta content.
func hasText(data []byte) bool {
	_, rest, ok := bytes.Cut(data, []byte(`"content":"`))
	return ok && len(rest) > 0 && rest[0] != '"'
}
