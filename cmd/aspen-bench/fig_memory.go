package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/verifier"
)

const childVerifierMem = "_verifier-mem"

// figMemory: the resident memory of an idle worker node (a real
// `aspen-node start` process, rated by a verifier in this process) and of
// a verifier tracking 10,000 registered workers (measured in a fresh
// child process so that nothing else this run allocated counts).
func figMemory(ctx context.Context, e *env) ([]Row, error) {
	rows, err := idleWorker(ctx, e)
	if err != nil {
		return rows, fmt.Errorf("idle worker: %w", err)
	}
	r, err := verifierMem(ctx, e, 10_000)
	if err != nil {
		return rows, fmt.Errorf("verifier with 10k workers: %w", err)
	}
	return append(rows, r), nil
}

// rssOf reads VmRSS of a process in bytes.
func rssOf(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range ents {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 && f[1] == strconv.Itoa(pid) {
				out = append(out, p)
			}
		}
	}
	return out
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// nodeBinary finds aspen-node: --node-bin, else beside this executable
// (make build puts both in bin/), else it is built from this checkout.
func nodeBinary(ctx context.Context, e *env) (string, error) {
	if e.nodeBin != "" {
		return e.nodeBin, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "aspen-node")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	out := filepath.Join(e.dir, "aspen-node")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/aspen-market/aspen/cmd/aspen-node")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build aspen-node (pass --node-bin): %v: %s", err, b)
	}
	return out, nil
}

func idleWorker(ctx context.Context, e *env) ([]Row, error) {
	bin, err := nodeBinary(ctx, e)
	if err != nil {
		return nil, err
	}
	vcfg := verifier.DefaultConfig()
	vcfg.DataDir = filepath.Join(e.dir, "mem-verifier")
	vcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	vcfg.APIAddr = ""
	vcfg.Logger = e.log.With("who", "mem-verifier")
	vcfg.BenchmarkTasks = 2
	vcfg.Sandbox.CacheDir = e.cache
	vcfg.Sandbox.Nice = 0
	v, err := verifier.New(vcfg)
	if err != nil {
		return nil, err
	}
	defer v.Close()
	if err := v.Start(ctx); err != nil {
		return nil, err
	}
	data := filepath.Join(e.dir, "mem-worker")
	vaddr := v.Addrs()[0].String() + "/p2p/" + v.ID().String()
	initCmd := exec.CommandContext(ctx, bin, "init", "--data", data, "--role", "worker", "--verifier", vaddr,
		"--min-price", "0.01", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	if b, err := initCmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("aspen-node init: %v: %s", err, b)
	}
	logf, err := os.Create(filepath.Join(e.dir, "mem-worker.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "start", "--data", data)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	pid := cmd.Process.Pid
	t0 := time.Now()
	deadline := t0.Add(3 * time.Minute)
	for {
		rated := false
		for _, w := range v.Workers() {
			rated = rated || w.Rated
		}
		if rated {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			b, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("worker not rated after %v; its log:\n%s", time.Since(t0).Round(time.Second), tail(b, 1500))
		}
		time.Sleep(50 * time.Millisecond)
	}
	rated := time.Since(t0)
	settle := 15 * time.Second
	if e.quick {
		settle = 5 * time.Second
	}
	time.Sleep(settle)
	var node, kids []int64
	nkids := 0
	for range 5 {
		r, err := rssOf(pid)
		if err != nil {
			return nil, err
		}
		var k int64
		cs := childrenOf(pid)
		for _, c := range cs {
			if rc, err := rssOf(c); err == nil {
				k += rc
			}
		}
		node, kids, nkids = append(node, r), append(kids, k), len(cs)
		time.Sleep(time.Second)
	}
	med := func(s []int64) int64 {
		c := append([]int64(nil), s...)
		for i := range c {
			for j := i + 1; j < len(c); j++ {
				if c[j] < c[i] {
					c[i], c[j] = c[j], c[i]
				}
			}
		}
		return c[len(c)/2]
	}
	return []Row{
		Row{Figure: "8 idle worker node RSS (aspen-node start, rated, idle)", Value: mib(med(node)), Unit: "MiB"}.
			target("value", "<=", 60).
			note("rated %.1f s after start, then idle %v; median of 5 readings of /proc/PID/status VmRSS", rated.Seconds(), settle),
		{Figure: fmt.Sprintf("8 idle worker's sandbox executor children RSS (%d process)", nkids), Value: mib(med(kids)), Unit: "MiB",
			Note: "reported separately; holds the compiled benchmark module"},
	}, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// verifierMemResult is what the child process reports.
type verifierMemResult struct {
	Workers    int     `json:"workers"`
	BaseRSS    int64   `json:"base_rss"`
	RSS        int64   `json:"rss"`
	RSSFreed   int64   `json:"rss_after_free"`
	HeapInuse  uint64  `json:"heap_inuse"`
	HeapBase   uint64  `json:"heap_base"`
	Seconds    float64 `json:"seconds"`
	BenchTried int     `json:"bench_tried"`
}

func verifierMem(ctx context.Context, e *env, n int) (Row, error) {
	self, err := os.Executable()
	if err != nil {
		return Row{}, err
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, self, childVerifierMem, filepath.Join(e.dir, "mem-10k"), strconv.Itoa(n))
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return Row{}, fmt.Errorf("%v: %s", err, tail(errb.Bytes(), 2000))
	}
	var r verifierMemResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return Row{}, fmt.Errorf("child output %q: %v", out.String(), err)
	}
	return Row{Figure: fmt.Sprintf("8 verifier tracking %d registered workers: RSS", r.Workers), Value: mib(r.RSS), Unit: "MiB"}.
		withBaseline(mib(r.BaseRSS), "MiB", "same verifier with no workers").target("value", "<=", 300).
		note("registered through the registration handler in %.1f s; Go heap in use %.0f MiB (%.0f MiB before); RSS after debug.FreeOSMemory %.0f MiB; %d benchmarks attempted (synthetic workers have no address, so benchmarks fail and they stay unrated)",
			r.Seconds, float64(r.HeapInuse)/(1<<20), float64(r.HeapBase)/(1<<20), mib(r.RSSFreed), r.BenchTried), nil
}

// runVerifierMemChild is the child side of verifierMem: args are the data
// directory and the number of workers. It prints verifierMemResult.
func runVerifierMemChild(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: aspen-bench", childVerifierMem, "DIR N")
		return 2
	}
	n, err := strconv.Atoi(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r, err := verifierMemChild(context.Background(), args[0], n)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	return 0
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func verifierMemChild(ctx context.Context, dir string, n int) (verifierMemResult, error) {
	cfg := verifier.DefaultConfig()
	cfg.DataDir = dir
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIAddr = ""
	cfg.Runner = stubRunner{}
	cfg.BenchmarkTasks = 1
	cfg.Sandbox.Isolation = sandbox.InProcess
	v, err := verifier.New(cfg)
	if err != nil {
		return verifierMemResult{}, err
	}
	defer v.Close()
	if err := v.Start(ctx); err != nil {
		return verifierMemResult{}, err
	}
	pid := os.Getpid()
	time.Sleep(2 * time.Second)
	res := verifierMemResult{Workers: n, HeapBase: heapInuse()}
	res.BaseRSS, _ = rssOf(pid)

	// Keys and sealed registrations first (not part of the verifier).
	regs := make([][]byte, n)
	for i := range regs {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return res, err
		}
		id, _ := peer.IDFromPrivateKey(key)
		regs[i], err = protocol.Seal(key, &protocol.Register{Worker: id, Owner: fmt.Sprintf("owner-%d", i), MinPrice: 10_000,
			Slots: 2, Nonce: protocol.NewID(), Time: time.Now().UnixMilli()})
		if err != nil {
			return res, err
		}
	}
	t0 := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := v.RegisterLocal(ctx, regs[i]); err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return res, err
	default:
	}
	regs = nil
	// Wait for the benchmark attempts to end (they fail: no addresses).
	deadline := time.Now().Add(2 * time.Minute)
	for {
		busy, tried := 0, 0
		ws := v.Workers()
		for _, w := range ws {
			if w.Benchmarking {
				busy++
			}
			if w.BenchFailures > 0 || w.Rated {
				tried++
			}
		}
		res.BenchTried = tried
		if len(ws) == n && busy == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	res.Seconds = time.Since(t0).Seconds()
	time.Sleep(3 * time.Second)
	res.HeapInuse = heapInuse()
	res.RSS, _ = rssOf(pid)
	// ASPEN_BENCH_MEMPROFILE=FILE: the child's allocation profile (where the
	// resident memory came from).
	if path := os.Getenv("ASPEN_BENCH_MEMPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	debug.FreeOSMemory()
	res.RSSFreed, _ = rssOf(pid)
	return res, nil
}
