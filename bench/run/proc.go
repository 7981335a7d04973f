package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is the USER_HZ of /proc/PID/stat times. Linux has fixed it
// at 100 on every common architecture.
const clockTicks = 100

// proc is a child process of the run.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
}

// start runs bin with args and extra environment, its output going to a
// log file in dir.
func start(dir, name, bin string, env []string, args ...string) (*proc, error) {
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{name: name, cmd: cmd, log: f}, nil
}

// stop sends SIGTERM and waits up to 15 s before killing the process.
func (p *proc) stop() {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// cpuSeconds returns the user plus system CPU time of a process so far.
func cpuSeconds(pid int) float64 { return statSeconds(pid, false) }

// statSeconds reads the CPU times of /proc/PID/stat. With children it adds
// the times of the process's exited and reaped children.
func statSeconds(pid int, children bool) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15, cutime 16 and
	// cstime 17.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0
	}
	last := 12
	if children {
		last = 14
	}
	var ticks float64
	for _, field := range f[11 : last+1] {
		v, _ := strconv.ParseFloat(field, 64)
		ticks += v
	}
	return ticks / clockTicks
}

// peakRSSBytes returns VmHWM, the peak resident set of a process.
func peakRSSBytes(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// postgresCPU returns the CPU seconds of every process named postgres on
// the machine, the server and its backends, by process id. It includes
// servers this run did not start, and each process's reaped children, so
// that the time of a backend that exits moves to its server.
func postgresCPU() map[int]float64 {
	entries, _ := os.ReadDir("/proc")
	cpu := make(map[int]float64)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		cpu[pid] = statSeconds(pid, true)
	}
	return cpu
}

// cpuSpent returns the CPU seconds spent between two postgresCPU readings
// by the processes alive at the second. A server stopped in between drops
// out rather than making the sum negative.
func cpuSpent(before, after map[int]float64) float64 {
	var sum float64
	for pid, t := range after {
		sum += max(0, t-before[pid])
	}
	return sum
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it returns status want or 20 s pass.
func waitHTTP(ctx context.Context, url string, want int) error {
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not return %d within 20s (last: %s)", url, want, last)
}

// waitTCP waits until addr accepts connections or 20 s pass.
func waitTCP(addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s accepted no connection within 20s", addr)
}
