package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/verifier"
)

func TestMain(m *testing.M) {
	sandbox.RunChildIfRequested() // the test binary is also the sandbox executor
	goleak.VerifyTestMain(m)
}

// network is a verifier, two workers and a consumer in this process.
type network struct {
	v        *verifier.Verifier
	workers  []*node.Node
	consumer *node.Node
	dir      string
	cache    string
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startNetwork starts the network; opts adjust the verifier's config.
func startNetwork(t *testing.T, opts ...func(*verifier.Config)) *network {
	t.Helper()
	ctx := context.Background()
	nw := &network{dir: t.TempDir()}
	// One compilation cache for every sandbox: the example module is
	// compiled once (slow under -race), not once per node.
	nw.cache = filepath.Join(nw.dir, "wasm-cache")
	vcfg := verifier.DefaultConfig()
	vcfg.DataDir = filepath.Join(nw.dir, "verifier")
	vcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	vcfg.APIAddr = "127.0.0.1:0"
	vcfg.Logger = quietLogger()
	vcfg.Sandbox.CacheDir = nw.cache
	vcfg.BenchmarkWork = 2000
	vcfg.BenchmarkTasks = 1
	vcfg.BenchmarkRetry = 200 * time.Millisecond
	vcfg.ScheduleInterval = 10 * time.Millisecond
	vcfg.Market.SpeedTolerancePPM = 900_000 // timings under -race say little about speed
	vcfg.Market.SpotCheckPPM = 0
	for _, o := range opts {
		o(&vcfg)
	}
	v, err := verifier.New(vcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(ctx); err != nil {
		v.Close()
		t.Fatal(err)
	}
	nw.v = v
	t.Cleanup(func() { v.Close() })
	for i := 0; i < 2; i++ {
		n := nw.newNode(t, fmt.Sprintf("worker-%d", i), node.RoleWorker)
		nw.workers = append(nw.workers, n)
	}
	nw.consumer = nw.newNode(t, "consumer", node.RoleConsumer)
	return nw
}

func (nw *network) nodeConfig(name string, role node.Role) node.Config {
	cfg := node.DefaultConfig()
	cfg.DataDir = filepath.Join(nw.dir, name)
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIAddr = "127.0.0.1:0"
	cfg.Verifier = nw.v.AddrInfo()
	cfg.Role = role
	cfg.MinPrice = 1_000_000
	cfg.Owner = name
	cfg.HeartbeatInterval = 200 * time.Millisecond
	cfg.OfferInterval = time.Second
	cfg.Sandbox.CacheDir = nw.cache
	cfg.Logger = quietLogger()
	return cfg
}

func (nw *network) newNode(t *testing.T, name string, role node.Role) *node.Node {
	t.Helper()
	return startNode(t, nw.nodeConfig(name, role))
}

// startNode starts a node with cfg (a restart when its data directory was
// used before), closed when the test ends.
func startNode(t *testing.T, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		n.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		<-tick.C
	}
}

func (nw *network) waitRated(t *testing.T) {
	waitFor(t, "workers rated", 3*time.Minute, func() bool {
		for _, w := range nw.workers {
			if w.Info().Rating == nil {
				return false
			}
		}
		return true
	})
}

// catModule is a hand-assembled WASI command that copies stdin to stdout in
// one read and one write, so the test does not depend on compiling a Go
// program under the race detector.
var catModule = []byte("\x00asm\x01\x00\x00\x00" +
	// types: 0 = (i32,i32,i32,i32)->i32 ; 1 = ()->()
	"\x01\x0c\x02\x60\x04\x7f\x7f\x7f\x7f\x01\x7f\x60\x00\x00" +
	// imports: wasi fd_read, fd_write (type 0)
	"\x02\x44\x02" +
	"\x16wasi_snapshot_preview1\x07fd_read\x00\x00" +
	"\x16wasi_snapshot_preview1\x08fd_write\x00\x00" +
	// functions: one of type 1
	"\x03\x02\x01\x01" +
	// memory: 1 page
	"\x05\x03\x01\x00\x01" +
	// exports: memory, _start (func 2)
	"\x07\x13\x02\x06memory\x02\x00\x06_start\x00\x02" +
	// code
	"\x0a\x33\x01\x31\x00" +
	// iov at 0: buf=16, len=4096
	"\x41\x00\x41\x10\x36\x02\x00" +
	"\x41\x04\x41\x80\x20\x36\x02\x00" +
	// fd_read(0, iov=0, 1, nread=8)
	"\x41\x00\x41\x00\x41\x01\x41\x08\x10\x00\x1a" +
	// iov.len = nread
	"\x41\x04\x41\x08\x28\x02\x00\x36\x02\x00" +
	// fd_write(1, iov=0, 1, nwritten=12)
	"\x41\x01\x41\x00\x41\x01\x41\x0c\x10\x01\x1a" +
	"\x0b")

func TestGroupVerifiedAPIAndRestart(t *testing.T) {
	nw := startNetwork(t)
	nw.waitRated(t)
	ctx := context.Background()
	if err := nw.v.Credit(ctx, nw.consumer.ID(), 10_000_000); err != nil {
		t.Fatal(err)
	}
	// Inline inputs (≤ 4 KiB), one stored with its task record (10 KiB) and
	// one stored as a blob file (100 KiB); the last two are fetched by the
	// workers from the consumer. The module echoes the first 4 KiB.
	inputs := [][]byte{[]byte("alpha"), []byte("beta"), bytes.Repeat([]byte("g"), 3000), {},
		bytes.Repeat([]byte("m"), 10<<10), bytes.Repeat([]byte("L"), 100<<10)}
	id, err := nw.consumer.SubmitGroup(ctx, node.GroupSpec{Module: catModule, Inputs: inputs,
		MaxPrice: 5_000_000, Replicas: 2, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "group verified", 2*time.Minute, func() bool {
		g, err := nw.consumer.Group(id)
		return err == nil && g.Done
	})
	check := func(n *node.Node) {
		t.Helper()
		g, err := n.Group(id)
		if err != nil {
			t.Fatal(err)
		}
		if g.Verified != len(inputs) || g.Failed != 0 {
			t.Fatalf("group: %+v", g)
		}
		for i, in := range inputs {
			out, rec, err := n.Result(id, uint32(i))
			if err != nil {
				t.Fatalf("result %d: %v", i, err)
			}
			if out.Status != protocol.StatusOK || !bytes.Equal(out.Stdout, in[:min(len(in), 4096)]) || rec.State != node.TaskVerified {
				t.Fatalf("result %d: status %s stdout %q", i, out.Status, out.Stdout)
			}
		}
	}
	check(nw.consumer)

	// The API refuses requests without the token, and serves metrics that
	// parse and count what happened.
	api := "http://" + nw.consumer.APIAddr()
	resp, err := http.Get(api + "/v1/groups")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: status %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", api+"/v1/groups", strings.NewReader("{garbage"))
	req.Header.Set("Authorization", "Bearer "+nw.consumer.Token())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("garbage JSON: status %d", resp.StatusCode)
	}
	// /metrics takes the API token or the read-only metrics token, which
	// opens nothing else.
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", "wrong", http.StatusUnauthorized},
		{"/metrics", nw.consumer.Token(), http.StatusOK},
		{"/metrics", nw.consumer.MetricsToken(), http.StatusOK},
		{"/v1/groups", nw.consumer.MetricsToken(), http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest("GET", api+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s with token %q: status %d, want %d", c.path, c.token, resp.StatusCode, c.want)
		}
	}
	metric := func(n *node.Node, name, label string) float64 {
		t.Helper()
		resp := getMetrics(t, n)
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("metrics do not parse: %v", err)
		}
		f := fams[name]
		if f == nil {
			t.Fatalf("no metric %s", name)
		}
		sum := 0.0
		for _, m := range f.Metric {
			match := label == ""
			for _, l := range m.Label {
				if l.GetValue() == label {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
		return sum
	}
	if got := metric(nw.consumer, "aspen_node_tasks", node.TaskVerified); got != float64(len(inputs)) {
		t.Errorf("aspen_node_tasks{state=verified} = %v", got)
	}
	ran := metric(nw.workers[0], "aspen_node_jobs_total", "ok") + metric(nw.workers[1], "aspen_node_jobs_total", "ok")
	if ran < float64(2*len(inputs)) {
		t.Errorf("workers ran %v replicas, want at least %d", ran, 2*len(inputs))
	}

	// The peers endpoint lists the verifier with the gossip topics the
	// consumer knows it subscribes to.
	waitFor(t, "the verifier on both gossip topics in /v1/peers", time.Minute, func() bool {
		req, _ := http.NewRequest("GET", api+"/v1/peers", nil)
		req.Header.Set("Authorization", "Bearer "+nw.consumer.Token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ps []node.PeerInfo
		if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.ID == nw.v.ID().String() {
				return slices.Contains(p.Topics, protocol.TopicOffers) && slices.Contains(p.Topics, protocol.TopicBids)
			}
		}
		return false
	})

	// Worker job history is persisted and visible.
	jobs, err := nw.workers[0].Jobs(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) == 0 {
		t.Fatal("worker has no job history")
	}

	// Restart the consumer on the same data directory: every group and
	// every stored result is still there.
	cfg := nw.nodeConfig("consumer", node.RoleConsumer)
	if err := nw.consumer.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, cfg)
	check(n2)
	groups, err := n2.Groups()
	if err != nil || len(groups) != 1 {
		t.Fatalf("groups after restart: %v %v", groups, err)
	}
}

func TestRefusals(t *testing.T) {
	nw := startNetwork(t)
	nw.waitRated(t)
	ctx := context.Background()
	// No funds: refused before any worker is assigned.
	_, err := nw.consumer.SubmitGroup(ctx, node.GroupSpec{Module: catModule, Inputs: [][]byte{[]byte("x")},
		MaxPrice: 5_000_000, Replicas: 2, Timeout: time.Minute})
	if !errors.Is(err, node.ErrRefused) || !strings.Contains(err.Error(), "insufficient funds") {
		t.Fatalf("no funds: %v", err)
	}
	// A module that does not compile is refused locally, before any money.
	_, err = nw.consumer.SubmitGroup(ctx, node.GroupSpec{Module: []byte("\x00asm garbage"), Inputs: [][]byte{[]byte("x")},
		MaxPrice: 5_000_000, Replicas: 2, Timeout: time.Minute})
	if !errors.Is(err, node.ErrInvalidModule) {
		t.Fatalf("invalid module: %v", err)
	}
	// Fewer than two replicas is refused.
	_, err = nw.consumer.SubmitGroup(ctx, node.GroupSpec{Module: catModule, Inputs: [][]byte{[]byte("x")},
		MaxPrice: 5_000_000, Replicas: 1, Timeout: time.Minute})
	if !errors.Is(err, node.ErrBadRequest) {
		t.Fatalf("one replica: %v", err)
	}
}

// TestAPIBindsLoopback: the API address must be loopback unless remote
// access is allowed explicitly; the refusal says how to allow it.
func TestAPIBindsLoopback(t *testing.T) {
	base := node.DefaultConfig()
	base.DataDir = t.TempDir()
	base.Verifier.ID = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
	for _, c := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:7341", false, true},
		{"127.0.0.5:0", false, true},
		{"[::1]:7341", false, true},
		{"localhost:7341", false, true},
		{"", false, true}, // API off
		{"0.0.0.0:7341", false, false},
		{":7341", false, false},
		{"[::]:7341", false, false},
		{"192.0.2.10:7341", false, false},
		{"example.com:7341", false, false},
		{"0.0.0.0:7341", true, true},
		{"192.0.2.10:7341", true, true},
	} {
		cfg := base
		cfg.APIAddr, cfg.APIAllowRemote = c.addr, c.remote
		err := cfg.Validate()
		switch {
		case c.ok && err != nil:
			t.Errorf("%q (remote %v): %v", c.addr, c.remote, err)
		case !c.ok && (err == nil || !errors.Is(err, node.ErrBadRequest) || !strings.Contains(err.Error(), "not a loopback address")):
			t.Errorf("%q (remote %v): want a loopback refusal, got %v", c.addr, c.remote, err)
		}
	}
	cfg := base
	cfg.APIAddr = "0.0.0.0:0"
	if _, err := node.New(cfg); err == nil {
		t.Fatal("New accepted a non-loopback API address")
	}
}
