// Command gateway runs the gateway for benchmarks: the same app.New, Start
// and Serve as "grokproxy serve", with the same settings from the
// environment, plus a debug listener on loopback that serves
// net/http/pprof profiles and the heap figures the benchmark reports.
//
//	gateway -debug 127.0.0.1:6061
//
// GET /debug/heap on the debug listener runs a garbage collection, so that
// heap in use counts live objects only, and returns
// {"heap_inuse_bytes":N,"heap_alloc_bytes":N,"goroutines":N}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/observe"
)

func main() {
	debugAddr := flag.String("debug", "127.0.0.1:6061", "loopback host:port of the profile and heap listener (empty: none)")
	flag.Parse()
	if err := run(*debugAddr); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(debugAddr string) error {
	cfg, err := config.Load("", os.Getenv)
	if err != nil {
		return err
	}
	logOut := observe.NewLogWriter(os.Stderr, cfg.LogFlushInterval)
	defer logOut.Close()
	log := observe.NewLogger(logOut, cfg.LogLevel, cfg.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		a.Close()
		return err
	}
	if debugAddr != "" {
		dln, err := net.Listen("tcp", debugAddr)
		if err != nil {
			ln.Close()
			a.Close()
			return err
		}
		dsrv := &http.Server{Handler: debugMux(), ReadHeaderTimeout: 10 * time.Second}
		go dsrv.Serve(dln)
		defer dsrv.Close()
	}
	defer app.TuneGC(cfg, log)()
	a.Start(context.Background())
	log.Info("listening", "addr", ln.Addr().String())
	serveErr := a.Serve(ctx, ln)
	return errors.Join(serveErr, a.Close())
}

// debugMux serves pprof and /debug/heap.
func debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/heap", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]uint64{
			"heap_inuse_bytes": m.HeapInuse,
			"heap_alloc_bytes": m.HeapAlloc,
			"goroutines":       uint64(runtime.NumGoroutine()),
		})
	})
	return mux
}
