package main

import (
	"fmt"
	"time"
)

// The systems under test. All but gateway-grok send the same xAI-format
// requests to the xAI API emulator. gateway-grok serves the same client
// requests from the Grok web emulator, so it adds the protocol
// translation.
const (
	sysDirect       = "direct"
	sysProxy        = "proxy"
	sysRelay        = "relay"
	sysGateway      = "gateway"
	sysGatewayGrok  = "gateway-grok"
	sysGatewayRedis = "gateway-redis"
)

// allSystems is the order in which each scenario alternates the systems.
var allSystems = []string{sysDirect, sysProxy, sysRelay, sysGateway, sysGatewayGrok}

// scenario is one load shape.
type scenario struct {
	name    string
	title   string
	clients int
	stream  bool
	// slow scenarios pace the emulator's tokens, start the clients over
	// a ramp, and have each read slowly and send one request.
	slow bool
	// h2c has the xai systems speak HTTP/2 without TLS to the emulator, as
	// they speak HTTP/2 through TLS to the real API, so that upstream
	// streams share connections and the gateway needs one descriptor per
	// stream, not two.
	h2c     bool
	systems []string
}

func scenarios(o options) []scenario {
	return []scenario{
		{name: "single", title: "non-streamed chat, 1 client", clients: 1, systems: allSystems},
		{name: "chat-32", title: "non-streamed chat, 32 clients", clients: 32, systems: allSystems},
		{name: "chat-256", title: "non-streamed chat, 256 clients", clients: 256, systems: allSystems},
		{name: "stream-32", title: "streamed chat (20 chunks), 32 clients", clients: 32, stream: true, systems: allSystems},
		{name: "stream-256", title: "streamed chat (20 chunks), 256 clients", clients: 256, stream: true, systems: allSystems},
		{name: "slow-streams", title: fmt.Sprintf("streamed chat, %d slow clients, HTTP/2 upstream", o.slowClients), clients: o.slowClients,
			stream: true, slow: true, h2c: true, systems: []string{sysDirect, sysProxy, sysRelay, sysGateway}},
		// The Grok web client speaks HTTP/1.1 to the emulator, so the
		// gateway holds two descriptors per stream and the count follows
		// the open-files limit.
		{name: "slow-streams-grok", title: fmt.Sprintf("streamed chat, %d slow clients, Grok web", o.slowGrokClients), clients: o.slowGrokClients,
			stream: true, slow: true, systems: []string{sysGatewayGrok}},
		{name: "redis-chat-256", title: "non-streamed chat, 256 clients, with REDIS_URL", clients: 256,
			systems: []string{sysGatewayRedis}},
		{name: "redis-stream-256", title: "streamed chat (20 chunks), 256 clients, with REDIS_URL", clients: 256,
			stream: true, systems: []string{sysGatewayRedis}},
	}
}

// measurement is the figures of one run of one system.
type measurement struct {
	scenario scenario
	system   string
	load     loadResult
	// CPU seconds spent during the load, per process group.
	cpuSystem, cpuUpstream, cpuPostgres float64
	peakRSS                             int64
	// heapIdle and heapStreams are the gateway's live heap before the
	// load and with every slow client streaming; zero when not measured.
	heapIdle, heapStreams int64
	err                   error
	// rounds is the number of runs that median combined; 0 for one run.
	rounds int
	// runs are those runs, in the order they ran.
	runs []measurement
	// cpuRequests is the number of requests the CPU figures cover: the
	// measured ones when CPU was read from the end of the warm-up, all of
	// them otherwise.
	cpuRequests int
}

// loadResult is the JSON that bench/load prints.
type loadResult struct {
	Clients    int     `json:"clients"`
	Total      int     `json:"total"`
	Measured   int     `json:"measured"`
	Errors     int     `json:"errors"`
	Cut        int     `json:"cut"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"rps"`
	P50        float64 `json:"p50_us"`
	P99        float64 `json:"p99_us"`
	Max        float64 `json:"max_us"`
	TTFT50     float64 `json:"ttft_p50_us"`
	TTFT99     float64 `json:"ttft_p99_us"`
	FirstError string  `json:"first_error"`
}

// perThousand returns CPU seconds per 1,000 requests.
func (m measurement) perThousand(cpu float64) float64 {
	n := m.cpuRequests
	if n == 0 {
		n = m.load.Total
	}
	if n == 0 {
		return 0
	}
	return cpu / float64(n) * 1000
}

func (m measurement) isGateway() bool {
	return m.system == sysGateway || m.system == sysGatewayGrok || m.system == sysGatewayRedis
}

func (m measurement) summary() string {
	if m.err != nil {
		return "error: " + m.err.Error()
	}
	s := fmt.Sprintf("rps %8.0f  p50 %8s  p99 %8s  cpu/1k %.3fs  rss %d MiB  errors %d cut %d",
		m.load.RPS, us(m.load.P50), us(m.load.P99), m.perThousand(m.cpuSystem), m.peakRSS>>20, m.load.Errors, m.load.Cut)
	if m.heapStreams > 0 {
		s += fmt.Sprintf("  heap/stream %.1f KiB", m.heapPerStream()/1024)
	}
	if m.load.FirstError != "" {
		s += "  first error: " + m.load.FirstError
	}
	return s
}

// heapPerStream is (heap with every slow stream open - idle heap) / clients.
func (m measurement) heapPerStream() float64 {
	if m.heapStreams == 0 || m.load.Clients == 0 {
		return 0
	}
	return float64(m.heapStreams-m.heapIdle) / float64(m.load.Clients)
}

// us formats microseconds for a table cell.
func us(v float64) string {
	d := time.Duration(v * 1e3)
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f µs", float64(d)/1e3)
}
