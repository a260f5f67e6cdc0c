// Command loadtest measures the hfspace server the way BENCHMARKS.md
// reports it: cold start to the first /healthz and /readyz 200, resident
// memory idle and under load, and 64 concurrent clients mixing writes and
// reads for 10 seconds (requests/s, latency percentiles, non-2xx count).
//
//	go run ./examples/hfspace/loadtest            # builds the server, SQLite
//	go run ./examples/hfspace/loadtest -clients 64 -duration 10s -runs 3
//
// It talks to the server on 127.0.0.1 only.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "", "server binary (default: build examples/hfspace)")
	clients := flag.Int("clients", 64, "concurrent clients")
	duration := flag.Duration("duration", 10*time.Second, "load duration")
	writes := flag.Float64("writes", 0.3, "fraction of requests that create a note")
	runs := flag.Int("runs", 1, "repeat the whole measurement")
	flag.Parse()
	if *bin == "" {
		b, err := build()
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(filepath.Dir(b))
		*bin = b
	}
	fmt.Printf("machine: %s/%s, %d CPUs, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel())
	fmt.Println("| run | /healthz 200 | /readyz 200 | RSS idle | RSS peak | requests | req/s | p50 | p90 | p99 | max | non-2xx | errors |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	failed := false
	for i := 1; i <= *runs; i++ {
		r, err := measure(*bin, *clients, *duration, *writes)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		fmt.Printf("| %d | %s | %s | %.1f MB | %.1f MB | %d | %.0f | %s | %s | %s | %s | %d | %d |\n", i,
			ms(r.healthz), ms(r.readyz), mb(r.rssIdle), mb(r.rssPeak), r.requests, r.rps,
			ms(r.p50), ms(r.p90), ms(r.p99), ms(r.max), r.non2xx, r.errors)
		failed = failed || r.non2xx > 0 || r.errors > 0
	}
	if failed {
		os.Exit(1)
	}
}

type result struct {
	healthz, readyz    time.Duration
	rssIdle, rssPeak   int64
	requests           int
	rps                float64
	p50, p90, p99, max time.Duration
	non2xx, errors     int
}

func build() (string, error) {
	dir, err := os.MkdirTemp("", "loadtest-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hfspace")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/dbfallback/dbfallback/examples/hfspace")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

func measure(bin string, clients int, duration time.Duration, writes float64) (result, error) {
	var r result
	dir, err := os.MkdirTemp("", "loadtest-data-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return r, err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "PORT=" + strconv.Itoa(port), "SQLITE_PATH=" + filepath.Join(dir, "notes.db")}
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	}()
	poll := &http.Client{Timeout: time.Second}
	waitFor := func(path string) (time.Duration, error) {
		for time.Since(start) < 30*time.Second {
			if resp, err := poll.Get(base + path); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return time.Since(start), nil
				}
			}
			time.Sleep(time.Millisecond)
		}
		return 0, errors.New(path + " never answered 200")
	}
	if r.healthz, err = waitFor("/healthz"); err != nil {
		return r, err
	}
	if r.readyz, err = waitFor("/readyz"); err != nil {
		return r, err
	}
	time.Sleep(time.Second)
	r.rssIdle = rss(cmd.Process.Pid)

	transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	var ids []int64
	var idMu sync.Mutex
	for i := range 20 {
		id, err := create(client, base, i)
		if err != nil {
			return r, err
		}
		ids = append(ids, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var peak atomic.Int64
	go func() {
		for ctx.Err() == nil {
			if v := rss(cmd.Process.Pid); v > peak.Load() {
				peak.Store(v)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var mu sync.Mutex
	var lat []time.Duration
	var non2xx, errs int
	var wg sync.WaitGroup
	loadStart := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			var mine []time.Duration
			bad, failed := 0, 0
			for n := 0; ctx.Err() == nil; n++ {
				t0 := time.Now()
				var code int
				var err error
				switch p := rng.Float64(); {
				case p < writes:
					var id int64
					id, err = create(client, base, n)
					code = 201
					if err == nil {
						idMu.Lock()
						ids = append(ids, id)
						idMu.Unlock()
					}
				case p < writes+(1-writes)/2:
					code, err = get(client, base+"/api/notes?limit=20")
				default:
					idMu.Lock()
					id := ids[rng.IntN(len(ids))]
					idMu.Unlock()
					code, err = get(client, base+"/api/notes/"+strconv.FormatInt(id, 10))
				}
				if ctx.Err() != nil && err != nil {
					break // cut off by the end of the run
				}
				mine = append(mine, time.Since(t0))
				switch {
				case err != nil:
					failed++
				case code < 200 || code > 299:
					bad++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			non2xx += bad
			errs += failed
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(loadStart)
	r.rssPeak = peak.Load()
	slices.Sort(lat)
	r.requests, r.non2xx, r.errors = len(lat), non2xx, errs
	r.rps = float64(len(lat)) / elapsed.Seconds()
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	r.p50, r.p90, r.p99, r.max = pct(0.50), pct(0.90), pct(0.99), lat[len(lat)-1]
	return r, nil
}

var errStatus = errors.New("unexpected status")

func create(c *http.Client, base string, n int) (int64, error) {
	body, _ := json.Marshal(map[string]string{"title": "load " + strconv.Itoa(n), "body": strings.Repeat("x", 200)})
	resp, err := c.Post(base+"/api/notes", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 {
		io.Copy(io.Discard, resp.Body)
		return 0, fmt.Errorf("%w %d", errStatus, resp.StatusCode)
	}
	var note struct {
		ID int64 `json:"id"`
	}
	return note.ID, json.NewDecoder(resp.Body).Decode(&note)
}

func get(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// rss reads the resident set size of pid from /proc, in bytes.
func rss(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
func mb(b int64) float64        { return float64(b) / (1 << 20) }
