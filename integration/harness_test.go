package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
	"github.com/aspen-market/aspen/verifier"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// ---- waiting ----

// waitFor polls cond every 25 ms until it holds, fails or the deadline
// passes. It never sleeps for a fixed time to "let things happen".
func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	if err := poll(d, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// poll is waitFor returning the failure instead of failing the test.
func poll(d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("timed out after %v (last error: %v)", d, last)
			}
			return fmt.Errorf("timed out after %v", d)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ---- processes ----

// proc is one real process of the network with its own data directory and
// log file; it can be started, stopped, killed with SIGKILL, frozen and
// restarted on the same data directory.
type proc struct {
	t    testing.TB
	name string
	bin  string
	data string
	log  string
	args func() []string // computed at each start

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	logStart int64 // size of the log when the current run started
	starts   int
}

func newProc(t testing.TB, name, bin, data string, args func() []string) *proc {
	p := &proc{t: t, name: name, bin: bin, data: data, log: data + ".log", args: args}
	t.Cleanup(p.kill)
	return p
}

// cleanEnv is the environment without ASPEN_* variables (the processes get
// everything on their command line).
func cleanEnv() []string {
	var out []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "ASPEN_") {
			out = append(out, e)
		}
	}
	return out
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.t.Fatalf("%s already running", p.name)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	st, _ := f.Stat()
	p.logStart = st.Size()
	args := p.args()
	p.starts++
	fmt.Fprintf(f, "==== %s start #%d: %s %s\n", time.Now().Format(time.TimeOnly), p.starts, filepath.Base(p.bin), strings.Join(args, " "))
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(f, "==== %s exited: %v\n", time.Now().Format(time.TimeOnly), cmd.ProcessState)
		f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
}

// running reports whether the process is alive.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// wait waits for the process to exit (after a signal) and forgets it.
func (p *proc) wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
	case <-time.After(d):
		return false
	}
	p.mu.Lock()
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	return true
}

// kill sends SIGKILL (kill -9) and waits for the process to be gone. Its
// sandbox executors die with it (they have a parent-death signal).
func (p *proc) kill() {
	p.signal(syscall.SIGCONT) // a frozen process must not stay frozen
	p.signal(syscall.SIGKILL)
	p.wait(time.Minute)
}

// stop asks the process to shut down (SIGTERM) and kills it if it does not
// within 30 s.
func (p *proc) stop() {
	p.signal(syscall.SIGTERM)
	if !p.wait(30 * time.Second) {
		p.t.Errorf("%s did not stop within 30 s of SIGTERM; killing it", p.name)
		p.kill()
	}
}

// freeze stops the process (SIGSTOP): a worker cut off from everyone.
func (p *proc) freeze() { p.signal(syscall.SIGSTOP) }

// thaw lets a frozen process run on (SIGCONT).
func (p *proc) thaw() { p.signal(syscall.SIGCONT) }

// output returns what the current run wrote so far.
func (p *proc) output() string {
	p.mu.Lock()
	off := p.logStart
	p.mu.Unlock()
	f, err := os.Open(p.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	_, _ = f.Seek(off, io.SeekStart)
	b, _ := io.ReadAll(f)
	return string(b)
}

// tail returns the last n lines of the whole log.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logCount counts lines of the whole log containing s.
func (p *proc) logCount(s string) int {
	b, _ := os.ReadFile(p.log)
	return strings.Count(string(b), s)
}

var tcpPort = regexp.MustCompile(`/ip4/127\.0\.0\.1/tcp/(\d+)`)

// port returns the libp2p TCP port the current run printed after line
// prefix, or 0.
func (p *proc) port(prefix string) int {
	for _, l := range strings.Split(p.output(), "\n") {
		if i := strings.Index(l, prefix); i >= 0 {
			if m := tcpPort.FindStringSubmatch(l[i:]); m != nil {
				n, _ := strconv.Atoi(m[1])
				return n
			}
		}
	}
	return 0
}

// prepareData creates a data directory with its identity key (so the peer
// ID is known before the process starts) and links the shared compiled
// module cache into it.
func prepareData(t testing.TB, dir string) peer.ID {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := p2p.LoadOrCreateKey(filepath.Join(dir, "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "wasm-cache")
	if _, err := os.Lstat(cache); errors.Is(err, os.ErrNotExist) {
		if err := os.Symlink(sharedCache(), cache); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// ---- the verifier process ----

// verifierSettings are the verifier.json fields the tests set.
type verifierSettings struct {
	SpotCheckRate    string `json:"spot_check_rate"`
	OperatorCut      string `json:"operator_cut"`
	SpeedTolerance   string `json:"speed_tolerance"`
	SpeedSlack       string `json:"speed_slack"`
	HeartbeatTimeout string `json:"heartbeat_timeout"`
	MaxExtraReplicas int    `json:"max_extra_replicas"`
	StrikesToExclude int    `json:"strikes_to_exclude"`
	VerifierTiebreak bool   `json:"verifier_tiebreak"`
	VerifierSlots    int    `json:"verifier_slots"`
	BenchmarkKernel  string `json:"benchmark_kernel"`
	BenchmarkWork    int    `json:"benchmark_work"`
	BenchmarkTasks   int    `json:"benchmark_tasks"`
	QueueTimeout     string `json:"queue_timeout"`
	RestartGrace     string `json:"restart_grace"`
	QueueDepth       int    `json:"queue_depth"`
}

type verifierProc struct {
	*proc
	id    peer.ID
	port  int // libp2p TCP port, kept across restarts
	token string
	api   string
	hc    *http.Client
	set   verifierSettings
}

func startVerifier(t testing.TB, dir string, set verifierSettings) *verifierProc {
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
	v := &verifierProc{id: id, token: tok, hc: &http.Client{Timeout: 30 * time.Second}, set: set}
	v.proc = newProc(t, "verifier", verifierBin(t), dir, func() []string {
		return []string{"start", "--data", dir, "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", v.port),
			"--api", "127.0.0.1:0", "--log-level", "debug"}
	})
	v.start()
	return v
}

// start runs the verifier (on the port of its first run after a restart)
// and waits for its operator API.
func (v *verifierProc) start() {
	t := v.t
	t.Helper()
	_ = os.Remove(filepath.Join(v.data, verifier.AddrFile))
	v.proc.start()
	waitFor(t, 60*time.Second, "the verifier to listen", func() (bool, error) {
		if !v.running() {
			return false, fmt.Errorf("verifier exited:\n%s", v.tail(30))
		}
		b, err := os.ReadFile(filepath.Join(v.data, verifier.AddrFile))
		if err != nil || !strings.Contains(v.output(), "listening on") {
			return false, nil
		}
		v.api = strings.TrimSpace(string(b))
		if p := v.proc.port("listening on"); p != 0 {
			v.port = p
		}
		return true, nil
	})
}

// restart kills the verifier with SIGKILL (or stops it) and starts it again
// on the same data directory and port.
func (v *verifierProc) restart(kill bool) {
	if kill {
		v.kill()
	} else {
		v.stop()
	}
	v.start()
}

// addr is the verifier's full multiaddr, what nodes pin.
func (v *verifierProc) addr() string {
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", v.port, v.id)
}

func (v *verifierProc) addrInfo() peer.AddrInfo {
	a, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", v.port))
	return peer.AddrInfo{ID: v.id, Addrs: []ma.Multiaddr{a}}
}

// desk is the peer ID of the verifier's benchmark desk, read from its key
// file in the verifier's data directory.
func (v *verifierProc) desk() peer.ID {
	key, err := p2p.LoadOrCreateKey(filepath.Join(v.data, verifier.DeskKeyFile))
	if err != nil {
		v.t.Fatalf("benchmark desk key: %v", err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	return id
}

// get calls the operator API.
func (v *verifierProc) get(path string, out any) error {
	req, _ := http.NewRequest("GET", "http://"+v.api+path, nil)
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := v.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

func (v *verifierProc) workers() ([]verifier.WorkerInfo, error) {
	var out struct {
		Workers []verifier.WorkerInfo `json:"workers"`
	}
	err := v.get("/v1/workers", &out)
	return out.Workers, err
}

func (v *verifierProc) worker(id peer.ID) (verifier.WorkerInfo, bool) {
	ws, err := v.workers()
	if err != nil {
		return verifier.WorkerInfo{}, false
	}
	for _, w := range ws {
		if w.ID == id.String() {
			return w, true
		}
	}
	return verifier.WorkerInfo{}, false
}

func (v *verifierProc) group(id string) (verifier.GroupInfo, error) {
	var g verifier.GroupInfo
	err := v.get("/v1/groups/"+id, &g)
	return g, err
}

func (v *verifierProc) accounts() (verifier.AccountsView, error) {
	var a verifier.AccountsView
	err := v.get("/v1/accounts", &a)
	return a, err
}

// journal returns an account's whole journal ("" = every posting; a bare
// peer ID = all of its accounts), paging through the operator API.
func (v *verifierProc) journal(account string) ([]ledger.JournalEntry, error) {
	var all []ledger.JournalEntry
	var after uint64
	for {
		var out struct {
			Entries []ledger.JournalEntry `json:"entries"`
		}
		if err := v.get(fmt.Sprintf("/v1/ledger?limit=10000&after=%d&account=%s", after, account), &out); err != nil {
			return nil, err
		}
		if len(out.Entries) == 0 {
			return all, nil
		}
		all = append(all, out.Entries...)
		after = out.Entries[len(out.Entries)-1].Seq
	}
}

// credit credits a consumer through the operator CLI.
func (v *verifierProc) credit(t testing.TB, who peer.ID, amount string) {
	t.Helper()
	out, err := exec.Command(verifierBin(t), "credit", "--new", "--data", v.data, who.String(), amount).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "credited") {
		t.Fatalf("aspen-verifier credit: %v\n%s", err, out)
	}
}

// ledgerState is what an offline check of the verifier's ledger found.
type ledgerState struct {
	Total    protocol.Micros
	CheckErr error
	Escrow   protocol.Micros // Σ escrow accounts
	Balances map[string]protocol.Micros
}

// Conserved: the accounts sum to zero and the journal replays to them.
func (l ledgerState) Conserved() bool { return l.Total == 0 && l.CheckErr == nil }

// checkLedger stops the verifier (SIGTERM), opens its store in this
// process, runs the ledger's Check (the whole journal replayed against the
// stored balances) and sums the accounts, then starts the verifier again.
func (v *verifierProc) checkLedger(t testing.TB) ledgerState {
	t.Helper()
	v.stop()
	defer v.start()
	return openLedger(t, v.data)
}

func openLedger(t testing.TB, data string) ledgerState {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = filepath.Join(data, verifier.StoreDir)
	cfg.ValueLogGCInterval = 0
	cfg.TrimInterval = 0
	cfg.ValueThreshold = 64 << 10
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatalf("open the verifier's store: %v", err)
	}
	defer st.Close()
	led, err := ledger.Open(st, ledger.Config{})
	if err != nil {
		t.Fatalf("open the verifier's ledger: %v", err)
	}
	ls := ledgerState{Balances: map[string]protocol.Micros{}, CheckErr: led.Check()}
	bs, err := led.Balances()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		ls.Balances[b.Account] = b.Balance
		ls.Total += b.Balance
		if strings.HasPrefix(b.Account, "escrow:") {
			ls.Escrow += b.Balance
		}
	}
	return ls
}

// ---- node processes ----

type nodeProc struct {
	*proc
	label   string
	id      peer.ID
	port    int // libp2p TCP port, kept across restarts
	apiAddr string
	token   string
}

// nodeOpts are an aspen-node's start flags.
type nodeOpts struct {
	role     string // worker, consumer
	minPrice string
	owner    string
	slots    int
}

func startNode(t testing.TB, dir, label string, v *verifierProc, o nodeOpts) *nodeProc {
	t.Helper()
	id := prepareData(t, dir)
	n := &nodeProc{label: label, id: id}
	n.proc = newProc(t, label, nodeBin(t), dir, func() []string {
		args := []string{"start", "--data", dir, "--role", o.role, "--verifier", v.addr(),
			"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", n.port), "--api", "127.0.0.1:0", "--log-level", "debug"}
		if o.minPrice != "" {
			args = append(args, "--min-price", o.minPrice)
		}
		if o.owner != "" {
			args = append(args, "--owner", o.owner)
		}
		if o.slots > 0 {
			args = append(args, "--slots", strconv.Itoa(o.slots))
		}
		return args
	})
	n.start()
	return n
}

// start runs the node and waits until its API answers.
func (n *nodeProc) start() {
	t := n.t
	t.Helper()
	_ = os.Remove(filepath.Join(n.data, "api.addr"))
	n.proc.start()
	waitFor(t, 60*time.Second, n.label+"'s API", func() (bool, error) {
		if !n.running() {
			return false, fmt.Errorf("%s exited:\n%s", n.label, n.tail(30))
		}
		b, err := os.ReadFile(filepath.Join(n.data, "api.addr"))
		if err != nil {
			return false, nil
		}
		tok, err := os.ReadFile(filepath.Join(n.data, "api.token"))
		if err != nil {
			return false, nil
		}
		n.apiAddr, n.token = strings.TrimSpace(string(b)), strings.TrimSpace(string(tok))
		if p := n.proc.port("listening: "); p != 0 {
			n.port = p
		}
		_, err = n.client().Info(context.Background())
		return err == nil && n.port != 0, err
	})
}

// restart kills the node with SIGKILL and starts it on the same data
// directory and port.
func (n *nodeProc) restart() {
	n.kill()
	n.start()
}

func (n *nodeProc) client() *client.Client {
	return client.New("http://"+n.apiAddr, n.token, client.WithPollInterval(50*time.Millisecond, 200*time.Millisecond))
}

// serving reports whether the node's API answers.
func (n *nodeProc) serving() error {
	if !n.running() {
		return fmt.Errorf("%s is not running", n.label)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := n.client().Info(ctx)
	return err
}

func (n *nodeProc) addrInfo() peer.AddrInfo {
	a, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", n.port))
	return peer.AddrInfo{ID: n.id, Addrs: []ma.Multiaddr{a}}
}

// cli runs aspen-node with args against this node's data directory and
// returns stdout, stderr and the exit code.
func (n *nodeProc) cli(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin(t), args...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("aspen-node %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}
