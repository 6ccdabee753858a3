package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/protocol"
)

// Bad input through the consumer's front doors: modules that cannot run
// or misbehave, bad API requests, a consumer without funds.

// balance is the consumer's available balance and escrow, from the
// verifier's signed statement relayed by its node.
func balance(t testing.TB, nd *nodeProc) (protocol.Micros, protocol.Micros) {
	t.Helper()
	st, err := nd.client().Balance(context.Background())
	if err != nil {
		t.Fatalf("balance: %v", err)
	}
	return st.Balance, st.Escrow
}

// refusedModule submits a module that must be refused before any money
// moves, through the API and the CLI.
func refusedModule(t *testing.T, n *network, r *row, module []byte, want string) {
	bal, _ := balance(t, n.c)
	groups, _ := n.c.client().Groups(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := n.c.client().Map(ctx, module, [][]byte{[]byte("1")}, client.MapOptions{MaxPrice: 2_000_000, Timeout: time.Minute})
	if !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), want) {
		t.Errorf("API: %v, want a 400 mentioning %q", err, want)
	}
	j := job{module: module, inputs: [][]byte{[]byte("1")}, maxPrice: priceAll, timeout: "1m"}
	_, stderr, code := n.mapCLI(t, j)
	if code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("CLI: exit %d, stderr %q", code, stderr)
	}
	after, _ := balance(t, n.c)
	groups2, _ := n.c.client().Groups(context.Background())
	if after != bal || len(groups2) != len(groups) {
		t.Errorf("balance %v → %v, groups %d → %d", bal, after, len(groups), len(groups2))
	}
	msg := err.Error()
	if i := strings.Index(msg, want); i >= 0 {
		msg = msg[max(0, i-40):min(len(msg), i+len(want)+40)]
	}
	r.Wrong, r.Paid = "-", "nobody (no group, no escrow)"
	r.Outcome = fmt.Sprintf("refused before escrow: API 400 and CLI exit %d: “…%s…”", code, strings.TrimSpace(msg))
}

func scInvalidWasm(t *testing.T, n *network, r *row) {
	refusedModule(t, n, r, []byte("this is not a WebAssembly module"), "invalid")
}

func scMissingImport(t *testing.T, n *network, r *row) {
	refusedModule(t, n, r, missingImport(), "env.steal_cycles")
}

// hostileRun maps a module whose jobs misbehave and returns the per-input
// errors.
func hostileRun(t *testing.T, n *network, j job) ([]client.Result, verdict) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tmo, _ := time.ParseDuration(j.timeout)
	price, _ := protocol.ParseAmount(j.maxPrice)
	var gid string
	res, err := n.c.client().Map(ctx, j.module, j.inputs, client.MapOptions{MaxPrice: price, Timeout: tmo, MaxMemory: j.maxMemory,
		Progress: func(p client.Progress) { gid = p.Group }})
	if err != nil {
		t.Fatalf("map: %v", err)
	}
	n.waitDone(t, gid, time.Minute)
	return res, n.judge(t, gid, j)
}

func scLoopForever(t *testing.T, n *network, r *row) {
	j := job{module: loopForever(), inputs: [][]byte{[]byte("a"), []byte("b")}, maxPrice: priceAll, timeout: "1s"}
	res, v := hostileRun(t, n, j)
	n.fill(r, v)
	r.Wrong = "-"
	for _, x := range res {
		if x.Err == nil || !strings.Contains(x.Err.Error(), "time limit exceeded") {
			t.Errorf("input %d: %v, want a time-limit failure", x.Index, x.Err)
		}
	}
	if v.spent != 0 {
		t.Errorf("charged %v for jobs that never finished", v.spent)
	}
	r.Outcome = fmt.Sprintf("per-input error, nothing charged: “%v”", res[0].Err)
}

func scAllocForever(t *testing.T, n *network, r *row) {
	j := job{module: allocForever(), inputs: [][]byte{[]byte("a"), []byte("b")}, maxPrice: priceAll, timeout: "30s", maxMemory: 16 << 20}
	res, v := hostileRun(t, n, j)
	n.fill(r, v)
	for _, x := range res {
		var te *client.TaskError
		if !errors.As(x.Err, &te) || te.Status != client.StatusMemoryLimit {
			t.Errorf("input %d: %v, want a memory-limit error", x.Index, x.Err)
		}
	}
	if v.wrongAccepted != 0 {
		t.Errorf("%d wrong", v.wrongAccepted)
	}
	r.Outcome = fmt.Sprintf("stopped at the 16 MiB cap on every replica alike: verified per-input error “%v”", res[0].Err)
}

// scAPIBadInput: requests without the token, with a wrong one, with
// garbage or invalid JSON, on the node's API and the verifier's operator
// API.
func scAPIBadInput(t *testing.T, n *network, r *row) {
	type req struct {
		what, method, url, token, body string
		want                           int
	}
	node := "http://" + n.c.apiAddr
	op := "http://" + n.v.api
	modCID := protocol.BlobCID(mustModule("primes")).String()
	cases := []req{
		{"node: no token", "GET", node + "/v1/groups", "", "", 401},
		{"node: wrong token", "GET", node + "/v1/balance", "not-the-token", "", 401},
		{"node: submit without token", "POST", node + "/v1/groups", "", `{}`, 401},
		{"node: garbage JSON", "POST", node + "/v1/groups", n.c.token, `{"module": [1,2`, 400},
		{"node: unknown field", "POST", node + "/v1/groups", n.c.token, `{"module":"` + modCID + `","inputs":[{"data":"MQ=="}],"max_price":"1","bogus":1}`, 400},
		{"node: bad CID", "POST", node + "/v1/groups", n.c.token, `{"module":"not-a-cid","inputs":[{"data":"MQ=="}],"max_price":"1"}`, 400},
		{"node: negative price", "POST", node + "/v1/groups", n.c.token, `{"module":"` + modCID + `","inputs":[{"data":"MQ=="}],"max_price":"-1"}`, 400},
		{"node: one replica", "POST", node + "/v1/groups", n.c.token, `{"module":"` + modCID + `","inputs":[{"data":"MQ=="}],"max_price":"1","replicas":1}`, 400},
		{"node: no inputs", "POST", node + "/v1/groups", n.c.token, `{"module":"` + modCID + `","inputs":[],"max_price":"1"}`, 400},
		{"node: bad group id", "GET", node + "/v1/groups/zzz", n.c.token, "", 400},
		{"operator: no token", "GET", op + "/v1/accounts", "", "", 401},
		{"operator: credit without token", "POST", op + "/v1/credit", "", `{"peer":"` + n.c.id.String() + `","amount":"1000000"}`, 401},
		{"operator: garbage JSON", "POST", op + "/v1/credit", n.v.token, `{"peer":`, 400},
		{"operator: negative credit", "POST", op + "/v1/credit", n.v.token, `{"peer":"` + n.c.id.String() + `","amount":"-5"}`, 400},
		{"operator: bad peer", "POST", op + "/v1/credit", n.v.token, `{"peer":"nobody","amount":"5"}`, 400},
	}
	bal, _ := balance(t, n.c)
	var got []string
	for _, c := range cases {
		rq, _ := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
		if c.token != "" {
			rq.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(rq)
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || !bytes.Contains(b, []byte(`"error"`)) {
			t.Errorf("%s: %d %s, want %d with an error", c.what, resp.StatusCode, bytes.TrimSpace(b), c.want)
		}
		got = append(got, fmt.Sprint(resp.StatusCode))
	}
	if after, _ := balance(t, n.c); after != bal {
		t.Errorf("balance changed %v → %v", bal, after)
	}
	r.Wrong, r.Paid = "-", "nobody"
	r.Outcome = fmt.Sprintf("%d bad requests to the node and operator APIs: all answered 401/400 with a JSON error (%s); balance unchanged",
		len(cases), strings.Join(got, " "))
}

// scNoFunds: a second consumer that was never credited submits through
// the API and the CLI; the verifier refuses before any escrow.
func scNoFunds(t *testing.T, n *network, r *row) {
	poor := startNode(t, filepath.Join(n.dir, "poor"), "poor", n.v, nodeOpts{role: "consumer"})
	defer poor.stop()
	n.label(poor.id, "poor")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	j := primesJob(3, primesWidth, priceAll)
	_, err := poor.client().Map(ctx, j.module, j.inputs, client.MapOptions{MaxPrice: 2_000_000, Timeout: time.Minute})
	if !errors.Is(err, client.ErrRefused) || !strings.Contains(err.Error(), "insufficient funds") {
		t.Errorf("API: %v, want a refusal for insufficient funds", err)
	}
	_, stderr, code := poor.cli(t, "map", writeTemp(t, j.module), "--inputs", writeTemp(t, []byte(`"2 100"`+"\n")),
		"--max-price", priceAll, "--data", poor.data, "--quiet")
	if code == 0 || !strings.Contains(stderr, "insufficient funds") {
		t.Errorf("CLI: exit %d, stderr %q", code, stderr)
	}
	js, err := n.v.journal(poor.id.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(js) != 0 {
		t.Errorf("the unfunded consumer has %d journal entries", len(js))
	}
	if err := poor.serving(); err != nil {
		t.Errorf("the refused consumer stopped serving: %v", err)
	}
	r.Wrong, r.Paid = "-", "nobody (no escrow posted)"
	line := strings.TrimSpace(strings.Split(strings.TrimSpace(stderr), "\n")[0])
	r.Outcome = fmt.Sprintf("refused before escrow: API 402, CLI exit %d: “%s”", code, line)
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
