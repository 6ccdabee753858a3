package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/verifier"
)

// TestNAT runs real aspen-verifier and aspen-node processes on the
// namespace network (netlab_test.go): the verifier and a worker on the
// public segment, consumers and workers behind home routers. It checks
// that a consumer behind NAT gets its map computed by workers that fetch
// the module from it (directly when it can dial them back, hole-punched
// when both are behind endpoint-independent NATs, relayed — within the
// relay's limits — when both are behind symmetric NATs), that workers
// behind NAT take and complete jobs, and that each node says which path
// its blobs took. Root only (see requireLab); -report prints the table.
func TestNAT(t *testing.T) {
	start := time.Now()
	lab := newNetLab(t)
	dir := filepath.Join(tmpRoot, "nat")
	vh := lab.public("ver", 10)
	pubh := lab.public("pub", 11)
	c1h := lab.home("c1", 1, natEIM)
	w2h := lab.home("w2", 2, natEIM)
	c3h := lab.home("c3", 3, natSymmetric)
	w4h := lab.home("w4", 4, natSymmetric)

	v := startLabVerifier(t, vh, filepath.Join(dir, "verifier"), natSettings)
	c1 := newLabNode(t, c1h, filepath.Join(dir, "c1"), "c1", v, "consumer", "")
	c3 := newLabNode(t, c3h, filepath.Join(dir, "c3"), "c3", v, "consumer", "")
	// Credited before they start: the verifier relays for peers it knows.
	v.creditLab(t, c1.id, "1000")
	v.creditLab(t, c3.id, "1000")
	pub := newLabNode(t, pubh, filepath.Join(dir, "pub"), "pub", v, "worker", "1.00")
	w2 := newLabNode(t, w2h, filepath.Join(dir, "w2"), "w2", v, "worker", "1.00")
	for _, n := range []*labNode{c1, c3, pub, w2} {
		n.start()
	}
	v.waitWorkers(t, 2*time.Minute, pub, w2)
	t.Logf("workers rated %s after the start", time.Since(start).Round(time.Millisecond))

	var rows []natRow
	defer func() {
		table := renderNATTable(rows, time.Since(start))
		t.Logf("NAT scenarios:\n%s", table)
		if *reportFlag {
			fmt.Println(table)
			if f := os.Getenv("ASPEN_REPORT_FILE"); f != "" {
				_ = os.WriteFile(f+".nat", []byte(table), 0o644)
			}
		}
		if t.Failed() {
			for _, p := range []*proc{v.proc, c1.proc, c3.proc, pub.proc, w2.proc} {
				t.Logf("---- %s log tail ----\n%s", p.name, p.tail(60))
			}
		}
	}()

	// 1. Consumer behind an endpoint-independent NAT; one public worker,
	// one behind another endpoint-independent NAT. The module (2.3 MB,
	// over the relay limit) is in no worker's store. The consumer maps as
	// soon as the workers are rated, as README says (start, then map): if
	// AutoNAT has not spoken yet, its submit waits for a relay slot.
	t.Run("EIM", func(t *testing.T) {
		j := primesJob(6, 300_000, "1.00")
		took, out := c1.mapJob(t, j)
		checkMapOutput(t, j, out)
		g := v.groupOf(t, c1)
		pubPath, w2Path := blobPath(pub.proc, c1.id), blobPath(w2.proc, c1.id)
		// Between two hosts behind NAT a connection that is not relayed
		// was hole-punched; the path is labelled "direct" when the punch
		// completed before the node classified the connection.
		if w2Path != "hole-punched" && w2Path != "direct" {
			t.Errorf("w2 (behind NAT) fetched the module from c1 (behind NAT) over %q, want hole-punched (not relayed)", w2Path)
		}
		if pubPath != "direct" {
			t.Errorf("the public worker fetched the module from c1 over %q, want direct (c1 dials back)", pubPath)
		}
		waited := "submitted at once (its relay slot was already reserved)"
		if m := regexp.MustCompile(`msg="reachability known; submitting" .*waited=(\S+)`).FindStringSubmatch(c1.output()); m != nil {
			waited = "its submit waited " + m[1] + " for AutoNAT's verdict and a relay slot"
		}
		rows = append(rows, natRow{
			Scenario: "consumer behind NAT maps 6 inputs (primes, module 2.3 MB in no worker's store) right after the workers are rated; workers: one public, one behind NAT (both NATs endpoint-independent)",
			Outcome:  fmt.Sprintf("%d/%d results correct, in order; %s", verifiedCount(g), len(j.inputs), waited),
			Path:     fmt.Sprintf("module to the public worker: %s (the consumer dialled back); to the worker behind NAT: %s", pubPath, w2Path),
			Took:     took,
		})
		runs, agreed, verdicts := replicasOf(g, w2.id)
		if runs == 0 || agreed != runs {
			t.Errorf("w2 ran %d replicas, %d with the verified result (%s)", runs, agreed, verdicts)
		}
		rows = append(rows, natRow{
			Scenario: "worker behind NAT (endpoint-independent) takes and completes jobs",
			Outcome: fmt.Sprintf("w2 ran %d replicas of the group above, %d with the verified result (judged: %s); results reached the verifier over its own outbound connection",
				runs, agreed, verdicts),
			Path: "to the verifier: " + w2.network(t).VerifierPath,
			Took: took,
		})
	})

	for _, n := range []*labNode{c1, c3, w2} {
		n.waitNetwork(t, 90*time.Second, "private, reachable through the relay", func(nw client.Network) bool {
			return nw.Status == "private" && nw.Inbound == "relayed" && nw.VerifierPath == "direct"
		})
	}
	pub.waitNetwork(t, 90*time.Second, "public", func(nw client.Network) bool { return nw.Status == "public" && nw.Inbound == "direct" })
	// What the user sees: aspen-node start says it.
	for _, n := range []*labNode{c1, c3, w2} {
		if !strings.Contains(n.output(), "network: behind NAT: peers reach it through 2 relayed address(es)") {
			t.Errorf("%s's start output does not say it is behind NAT and relayed:\n%s", n.label, n.tail(40))
		}
	}
	if !strings.Contains(pub.output(), "network: public: peers dial it directly") {
		t.Errorf("pub's start output does not say it is public:\n%s", pub.tail(40))
	}
	t.Logf("namespace network up in %s", time.Since(start).Round(time.Millisecond))
	t.Run("Doctor", func(t *testing.T) {
		// aspen-node doctor next to the running consumer.
		out, code, took := c1.doctor(t, v)
		if code != 0 || !strings.Contains(out, "[ok  ] reachability: behind NAT") || !strings.Contains(out, "(the running node)") {
			t.Errorf("doctor of the running c1 exited %d:\n%s", code, out)
		}
		rows = append(rows, natRow{
			Scenario: "`aspen-node doctor` next to the running consumer behind NAT",
			Outcome:  fmt.Sprintf("exit %d; %s", code, doctorSummary(out)),
			Path:     "-",
			Took:     took,
		})
	})

	// 2. Consumer and worker each behind a symmetric NAT: hole punching
	// cannot work, so the small module goes through the verifier's relay.
	t.Run("Symmetric", func(t *testing.T) {
		w2.stop()
		// aspen-node doctor on the stopped w2 probes as w2 (while w4 starts).
		type doc struct {
			out  string
			code int
			took time.Duration
		}
		docDone := make(chan doc, 1)
		go func() {
			out, code, took := w2.doctor(t, v)
			docDone <- doc{out, code, took}
		}()
		w4 := newLabNode(t, w4h, filepath.Join(dir, "w4"), "w4", v, "worker", "1.00")
		w4.start()
		d := <-docDone
		if d.code != 0 || !strings.Contains(d.out, "[ok  ] reachability: behind NAT") || !strings.Contains(d.out, "(a probe with the node's identity)") {
			t.Errorf("doctor of the stopped w2 exited %d:\n%s", d.code, d.out)
		}
		rows = append(rows, natRow{
			Scenario: "`aspen-node doctor` for a stopped worker behind NAT (a probe with its identity)",
			Outcome:  fmt.Sprintf("exit %d; %s", d.code, doctorSummary(d.out)),
			Path:     "-",
			Took:     d.took,
		})
		v.waitWorkers(t, 2*time.Minute, w4)
		w4.waitNetwork(t, 90*time.Second, "private, reachable through the relay", func(nw client.Network) bool {
			return nw.Status == "private" && nw.Inbound == "relayed"
		})
		j := job{module: echo(), maxPrice: "1.00", timeout: "1m"}
		for i := range 6 {
			j.inputs = append(j.inputs, fmt.Appendf(nil, "echo through a relay #%d", i))
		}
		took, out := c3.mapJob(t, j)
		checkMapOutput(t, j, out)
		g := v.groupOf(t, c3)
		w4Path, pubPath := blobPath(w4.proc, c3.id), blobPath(pub.proc, c3.id)
		if w4Path != "relayed" {
			t.Errorf("w4 fetched the module from c3 (both behind symmetric NATs) over %q, want relayed", w4Path)
		}
		runs, agreed, verdicts := replicasOf(g, w4.id)
		if runs == 0 || agreed != runs {
			t.Errorf("w4 ran %d replicas, %d with the verified result (%s)", runs, agreed, verdicts)
		}
		nw := c3.network(t)
		rows = append(rows, natRow{
			Scenario: fmt.Sprintf("consumer and worker each behind a symmetric NAT map 6 inputs (module %d bytes, within the relay's limit)", len(j.module)),
			Outcome: fmt.Sprintf("%d/%d results correct; w4 ran %d replicas, %d with the verified result (judged: %s); c3 reports %s/%s (%d relayed addresses)",
				verifiedCount(g), len(j.inputs), runs, agreed, verdicts, nw.Status, nw.Inbound, len(nw.Relays)),
			Path: fmt.Sprintf("module to the worker behind symmetric NAT: %s; to the public worker: %s", w4Path, pubPath),
			Took: took,
		})
	})
}

// natSettings: the catalogue's verifier settings without spot checks (the
// verifier would fetch every module too) and with a small benchmark.
var natSettings = verifierSettings{
	SpotCheckRate:    "0",
	OperatorCut:      "0.05",
	SpeedTolerance:   "0.5",
	SpeedSlack:       "0s",
	HeartbeatTimeout: "10s",
	MaxExtraReplicas: 4,
	StrikesToExclude: 3,
	VerifierSlots:    1,
	BenchmarkKernel:  "hashchain",
	BenchmarkWork:    30000,
	BenchmarkTasks:   2,
	QueueTimeout:     "20s",
	RestartGrace:     "2s",
	QueueDepth:       16,
}

type natRow struct {
	Scenario, Outcome, Path string
	Took                    time.Duration
}

func renderNATTable(rows []natRow, total time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "NAT scenarios — %s, total %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), total.Round(time.Second))
	b.WriteString("| scenario | outcome | path used | time |\n|---|---|---|---|\n")
	for _, r := range rows {
		took := r.Took.Round(100 * time.Millisecond)
		if r.Took < time.Second {
			took = r.Took.Round(10 * time.Millisecond)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", esc(r.Scenario), esc(r.Outcome), esc(r.Path), took)
	}
	return b.String()
}

// ---- processes in namespaces ----

type labVerifier struct {
	*verifierProc
	h    *labHost
	addr string // full multiaddr of its TCP listener, what nodes pin
}

var labTCP = regexp.MustCompile(`listening on (/ip4/[0-9.]+/tcp/\d+)/p2p/`)

func startLabVerifier(t *testing.T, h *labHost, dir string, set verifierSettings) *labVerifier {
	t.Helper()
	id := prepareData(t, dir)
	b, _ := json.MarshalIndent(set, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, verifier.ConfigFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := verifier.LoadOrCreateToken(filepath.Join(dir, verifier.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	v := &labVerifier{h: h, verifierProc: &verifierProc{id: id, token: tok, hc: h.httpClient(), set: set}}
	v.proc = newProc(t, "verifier", "ip", dir, func() []string {
		return []string{"netns", "exec", h.ns, verifierBin(t), "start", "--data", dir,
			"--listen", "/ip4/" + h.ip + "/tcp/0", "--listen", "/ip4/" + h.ip + "/udp/0/quic-v1",
			"--api", "127.0.0.1:0", "--log-level", "debug"}
	})
	v.proc.start()
	waitFor(t, 60*time.Second, "the verifier to listen", func() (bool, error) {
		if !v.running() {
			return false, fmt.Errorf("verifier exited:\n%s", v.tail(30))
		}
		a, err := os.ReadFile(filepath.Join(dir, verifier.AddrFile))
		m := labTCP.FindStringSubmatch(v.output())
		if err != nil || m == nil {
			return false, nil
		}
		v.api = strings.TrimSpace(string(a))
		v.addr = m[1] + "/p2p/" + id.String()
		return true, nil
	})
	return v
}

// creditLab credits a consumer through the operator API.
func (v *labVerifier) creditLab(t *testing.T, who peer.ID, amount string) {
	t.Helper()
	body, _ := json.Marshal(verifier.CreditRequest{Peer: who.String(), Amount: amount})
	req, _ := http.NewRequest("POST", "http://"+v.api+"/v1/credit", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := v.hc.Do(req)
	if err != nil {
		t.Fatalf("credit %s: %v", who, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("credit %s: %s: %s", who, resp.Status, b)
	}
}

// waitWorkers waits until the verifier has rated the workers and holds
// them live in its book.
func (v *labVerifier) waitWorkers(t *testing.T, d time.Duration, ws ...*labNode) {
	t.Helper()
	for _, w := range ws {
		waitFor(t, d, w.label+" rated and live", func() (bool, error) {
			if !w.running() {
				return false, fmt.Errorf("%s exited:\n%s", w.label, w.tail(30))
			}
			wi, ok := v.worker(w.id)
			return ok && wi.Rated && wi.InBook && wi.Live, nil
		})
	}
}

// groupOf returns the verifier's view of the consumer's newest group once
// it is closed.
func (v *labVerifier) groupOf(t *testing.T, c *labNode) verifier.GroupInfo {
	t.Helper()
	gs, err := c.client().Groups(context.Background())
	if err != nil || len(gs) == 0 {
		t.Fatalf("%s's groups: %v (%d)", c.label, err, len(gs))
	}
	var g verifier.GroupInfo
	waitFor(t, time.Minute, "the group to close on the verifier", func() (bool, error) {
		var err error
		g, err = v.group(gs[0].ID)
		return err == nil && !g.Open, err
	})
	return g
}

type labNode struct {
	*proc
	h       *labHost
	label   string
	id      peer.ID
	apiAddr string
	token   string
	began   time.Time // the current run's start
}

// newLabNode prepares a node's data directory (its peer ID is known from
// then on); start runs it.
func newLabNode(t *testing.T, h *labHost, dir, label string, v *labVerifier, role, minPrice string) *labNode {
	t.Helper()
	n := &labNode{h: h, label: label, id: prepareData(t, dir)}
	n.proc = newProc(t, label, "ip", dir, func() []string {
		args := []string{"netns", "exec", h.ns, nodeBin(t), "start", "--data", dir, "--role", role, "--verifier", v.addr,
			"--api", "127.0.0.1:0", "--log-level", "debug"}
		if minPrice != "" {
			args = append(args, "--min-price", minPrice, "--owner", "owner-"+label, "--slots", "1")
		}
		return args
	})
	return n
}

func (n *labNode) start() {
	t := n.t
	t.Helper()
	_ = os.Remove(filepath.Join(n.data, "api.addr"))
	n.began = time.Now()
	n.proc.start()
	waitFor(t, 60*time.Second, n.label+"'s API", func() (bool, error) {
		if !n.running() {
			return false, fmt.Errorf("%s exited:\n%s", n.label, n.tail(30))
		}
		a, err := os.ReadFile(filepath.Join(n.data, "api.addr"))
		if err != nil {
			return false, nil
		}
		tok, err := os.ReadFile(filepath.Join(n.data, "api.token"))
		if err != nil {
			return false, nil
		}
		n.apiAddr, n.token = strings.TrimSpace(string(a)), strings.TrimSpace(string(tok))
		_, err = n.client().Info(context.Background())
		return err == nil, err
	})
}

func (n *labNode) client() *client.Client {
	return client.New("http://"+n.apiAddr, n.token, client.WithHTTPClient(n.h.httpClient()),
		client.WithPollInterval(50*time.Millisecond, 200*time.Millisecond))
}

func (n *labNode) network(t *testing.T) client.Network {
	t.Helper()
	in, err := n.client().Info(context.Background())
	if err != nil {
		t.Fatalf("%s info: %v", n.label, err)
	}
	return in.Network
}

// waitNetwork waits until the node's reachability (GET /v1/info) is ok.
func (n *labNode) waitNetwork(t *testing.T, d time.Duration, what string, ok func(client.Network) bool) {
	t.Helper()
	var last client.Network
	err := poll(d, func() (bool, error) {
		in, err := n.client().Info(context.Background())
		if err != nil {
			return false, err
		}
		last = in.Network
		return ok(last), nil
	})
	if err != nil {
		t.Fatalf("%s: waiting for reachability %q: %v (last: %+v)", n.label, what, err, last)
	}
	t.Logf("%s: %s/%s after %s (relays %v, public %v)", n.label, last.Status, last.Inbound,
		time.Since(n.began).Round(100*time.Millisecond), last.Relays, last.Public)
}

// mapJob runs `aspen-node map` in the node's namespace, as a user behind
// that NAT would, and returns how long it took and what it printed.
func (n *labNode) mapJob(t *testing.T, j job) (time.Duration, string) {
	t.Helper()
	tmp := t.TempDir()
	mod := filepath.Join(tmp, "job.wasm")
	if err := os.WriteFile(mod, j.module, 0o600); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, in := range j.inputs {
		lines = append(lines, string(in))
	}
	inf := filepath.Join(tmp, "inputs.txt")
	if err := os.WriteFile(inf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := n.h.command(ctx, nodeBin(t), "map", mod, "--lines", inf, "--max-price", j.maxPrice, "--timeout", j.timeout,
		"--data", n.data, "--quiet")
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began)
	if err != nil {
		t.Fatalf("aspen-node map in %s: %v\n%s", n.label, err, errb.String())
	}
	return took, out.String()
}

// doctor runs `aspen-node doctor` for the node inside its namespace and
// returns its stdout, exit status and how long it took.
func (n *labNode) doctor(t *testing.T, v *labVerifier) (string, int, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := n.h.command(ctx, nodeBin(t), "doctor", "--data", n.data, "--verifier", v.addr, "--wait", "60s")
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	began := time.Now()
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Errorf("aspen-node doctor in %s: %v\n%s", n.label, err, errb.String())
		code = -1
	}
	return out.String() + errb.String(), code, time.Since(began)
}

// doctorSummary is each check's name and verdict, with the reachability
// detail up to its first semicolon.
func doctorSummary(out string) string {
	var parts []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "[") {
			continue
		}
		verdict, rest, _ := strings.Cut(strings.TrimPrefix(l, "["), "] ")
		name, detail, _ := strings.Cut(rest, ": ")
		switch name {
		case "clock":
			detail, _, _ = strings.Cut(detail, ";")
			name += " " + strings.TrimSpace(detail)
		case "reachability":
			status, _, _ := strings.Cut(detail, ":")
			_, path, _ := strings.Cut(detail, "; verifier connection: ")
			path, _, _ = strings.Cut(path, " ")
			name += fmt.Sprintf(" %s, relayed, verifier connection %s", status, path)
		}
		parts = append(parts, strings.TrimSpace(verdict)+" "+name)
	}
	return strings.Join(parts, ", ")
}

// checkMapOutput compares what map printed with the job run in the test's
// own sandbox, input by input, in order (map prints each input's stdout
// ending in a newline).
func checkMapOutput(t *testing.T, j job, out string) {
	t.Helper()
	var want strings.Builder
	for _, in := range j.inputs {
		o := truth(t, j.module, in, time.Minute, 0).Stdout
		want.Write(o)
		if !bytes.HasSuffix(o, []byte("\n")) {
			want.WriteByte('\n') // map's text output ends each record with one
		}
	}
	if out != want.String() {
		t.Errorf("map printed %q, want %q", out, want.String())
	}
}

// blobPath is the last path the node's log says its blobs took with p
// ("blob path" lines), or "" if none.
func blobPath(p *proc, with peer.ID) string {
	b, _ := os.ReadFile(p.log)
	re := regexp.MustCompile(`msg="blob path" .*with=` + regexp.QuoteMeta(with.String()) + ` path=(\S+)`)
	last := ""
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		last = m[1]
	}
	return last
}

func verifiedCount(g verifier.GroupInfo) int {
	n := 0
	for _, ti := range g.Tasks {
		if ti.State == "verified" {
			n++
		}
	}
	return n
}

// replicasOf counts a worker's replicas in a group, those that reported
// the verified result, and says how they were judged ("6 paid", "4 paid,
// 2 too-slow").
func replicasOf(g verifier.GroupInfo, id peer.ID) (runs, agreed int, verdicts string) {
	count := map[string]int{}
	for _, ti := range g.Tasks {
		for _, r := range ti.Replicas {
			if r.Worker != id.String() {
				continue
			}
			runs++
			if r.Agreed {
				agreed++
			}
			count[r.Verdict]++
		}
	}
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(count)) {
		parts = append(parts, fmt.Sprintf("%d %s", count[v], v))
	}
	return runs, agreed, strings.Join(parts, ", ")
}
