package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier/ledger"
)

func TestSpotChecksRunOnTheVerifier(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Market.SpotCheckPPM = market.PPM // every task
	v := startVerifier(t, cfg, false)
	sb := workersSandbox
	a := startWorker(t, sb, v, "alice", workerPrice, workerBehaviour{})
	b := startWorker(t, sb, v, "bob", workerPrice, workerBehaviour{})
	waitRated(t, v, a, b)
	c := startConsumer(t, v)
	const credited = 10 * protocol.MicrosPerUnit
	credit(t, v, c, credited)
	gid := submitOK(t, c, defaultGroup(2)) // task 1's input is fetched as a blob
	rel := waitReleased(t, c, gid, 2)
	for i, r := range rel {
		if r.Outcome != protocol.OutcomeVerified || r.Replicas != 3 || len(r.Holders) != 3 || r.Holders[0] != v.ID() {
			t.Fatalf("task %d: %+v", i, r)
		}
	}
	gi, err := v.Group(gid)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range gi.Tasks {
		if !ti.VerifierRan || !ti.Trusted || ti.Agreed != 2 || ti.Charged != 2000 {
			t.Fatalf("task %+v", ti)
		}
		for _, r := range ti.Replicas {
			// Paid: its observed busy time (0 for a worker's first receipt
			// of the module) is far below the 100 ms of standard work.
			if r.Verdict != string(market.OutcomePaid) || (r.EffectiveSpeed != 0 && r.EffectiveSpeed < r.RatedSpeed) {
				t.Fatalf("replica %+v", r)
			}
		}
	}
	for _, w := range []*testWorker{a, b} {
		info := workerInfo(t, v, w)
		// A benchmark sample, then one observed sample per receipt whose
		// busy time was observed (the first of the module is not).
		h := info.SpeedHistory
		if info.SpotChecks.Passed != 2 || len(h) < 2 || h[0].Source != "benchmark" || h[len(h)-1].Source != "observed" {
			t.Fatalf("worker %+v", info)
		}
	}
	checkLedger(t, v, c, credited, a, b)
}

func TestCancelRefundsUnfinishedTasks(t *testing.T) {
	v := startVerifier(t, testConfig(t, t.TempDir()), false)
	sb := workersSandbox
	a := startWorker(t, sb, v, "alice", workerPrice, workerBehaviour{Delay: time.Second})
	b := startWorker(t, sb, v, "bob", workerPrice, workerBehaviour{Delay: time.Second})
	waitRated(t, v, a, b)
	c := startConsumer(t, v)
	const credited = 10 * protocol.MicrosPerUnit
	credit(t, v, c, credited)
	const n = 6
	gid := submitOK(t, c, defaultGroup(n))
	waitFor(t, 30*time.Second, "escrow taken", func() bool { return balance(t, v, acctEscrow(c.id.String())) > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ack protocol.Ack
	if err := c.host.Request(ctx, v.ID(), protocol.ProtoCancel, &protocol.Cancel{Consumer: c.id, Group: gid, Time: time.Now().UnixMilli()}, &ack); err != nil {
		t.Fatal(err)
	}
	rel := waitReleased(t, c, gid, n)
	canceled := 0
	for _, r := range rel {
		if r.Outcome == protocol.OutcomeCanceled {
			canceled++
			if r.Charged != 0 || r.Reason == "" {
				t.Fatalf("canceled task %+v", r)
			}
		}
	}
	if canceled == 0 || int(ack.Count) != canceled {
		t.Fatalf("%d canceled, ack says %d", canceled, ack.Count)
	}
	// Late receipts of canceled replicas change nothing.
	waitFor(t, 30*time.Second, "workers done", func() bool {
		_, ra := a.counts()
		_, rb := b.counts()
		return ra+rb >= 2*n-2*canceled
	})
	spent := checkLedger(t, v, c, credited, a, b)
	if spent != protocol.Micros(n-canceled)*2000 {
		t.Fatalf("spent %v for %d verified tasks", spent, n-canceled)
	}
	// A canceled group takes no more tasks.
	_, _, err := c.submit(ctx, defaultGroup(1))
	if err != nil {
		t.Fatalf("a new group after a cancel: %v", err)
	}
}

func TestTaskWaitingForFundsFailsAfterQueueTimeout(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.QueueTimeout = 2 * time.Second
	v := startVerifier(t, cfg, false)
	sb := workersSandbox
	a := startWorker(t, sb, v, "alice", workerPrice, workerBehaviour{})
	b := startWorker(t, sb, v, "bob", workerPrice, workerBehaviour{})
	waitRated(t, v, a, b)
	c := startConsumer(t, v)
	const credited = 400_002 // exactly one task's escrow: 2 × (72/h × 10 s + 1 µ for carries)
	credit(t, v, c, credited)
	gid := submitOK(t, c, defaultGroup(2))
	rel := waitReleased(t, c, gid, 2)
	if r := rel[0]; r.Outcome != protocol.OutcomeVerified || r.Charged != 2000 {
		t.Fatalf("task 0: %+v", r)
	}
	if r := rel[1]; r.Outcome != protocol.OutcomeFailed || !strings.HasPrefix(r.Reason, "insufficient funds") || r.Charged != 0 {
		t.Fatalf("task 1: %+v", r)
	}
	if spent := checkLedger(t, v, c, credited, a, b); spent != 2000 {
		t.Fatalf("spent %v", spent)
	}
}

func TestOperatorAPI(t *testing.T) {
	v := startVerifier(t, testConfig(t, t.TempDir()), false)
	base := "http://" + v.APIAddr()
	call := func(method, path, token string, body any, out any) int {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil && resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	for _, p := range []string{"/v1/info", "/v1/workers", "/v1/accounts", "/v1/ledger", "/v1/groups"} {
		if code := call("GET", p, "", nil, nil); code != 401 {
			t.Fatalf("%s without token: %d", p, code)
		}
		if code := call("GET", p, "wrong-token-wrong-token", nil, nil); code != 401 {
			t.Fatalf("%s with a wrong token: %d", p, code)
		}
	}
	// The dashboard page loads without the token (its data does not).
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("Aspen verifier")) {
		t.Fatalf("dashboard: %d", resp.StatusCode)
	}
	tok := v.Token()
	var info Info
	if call("GET", "/v1/info", tok, nil, &info) != 200 || info.Peer != v.ID().String() || len(info.Addrs) == 0 {
		t.Fatalf("info %+v", info)
	}
	c := newKey(t)
	cid, _ := peerIDFromKey(c)
	if code := call("POST", "/v1/credit", tok, CreditRequest{Peer: cid, Amount: "-1"}, nil); code != 400 {
		t.Fatalf("negative credit: %d", code)
	}
	if code := call("POST", "/v1/credit", tok, CreditRequest{Peer: "nobody", Amount: "1"}, nil); code != 400 {
		t.Fatalf("credit to a bad peer: %d", code)
	}
	if code := call("POST", "/v1/credit", tok, CreditRequest{Peer: cid, Amount: "2.5", Ref: "pay-1"}, nil); code != 200 {
		t.Fatalf("credit: %d", code)
	}
	// Same reference again: credited once.
	call("POST", "/v1/credit", tok, CreditRequest{Peer: cid, Amount: "2.5", Ref: "pay-1"}, nil)
	var accts AccountsView
	if call("GET", "/v1/accounts", tok, nil, &accts) != 200 || accts.Total != 0 || len(accts.Accounts) != 2 {
		t.Fatalf("accounts %+v", accts)
	}
	var jr struct{ Entries []ledger.JournalEntry }
	if call("GET", "/v1/ledger?account="+cid, tok, nil, &jr) != 200 || len(jr.Entries) != 1 || jr.Entries[0].Entries[1].Amount != 2_500_000 {
		t.Fatalf("ledger %+v", jr)
	}
	var batch ledger.Batch
	if call("POST", "/v1/payouts", tok, PayoutRequest{Threshold: "0.01", Batch: "b1"}, &batch) != 200 || batch.ID != "b1" || len(batch.Lines) != 0 {
		t.Fatalf("payout %+v", batch)
	}
	if code := call("GET", "/v1/groups/zz", tok, nil, nil); code != 400 {
		t.Fatalf("bad group id: %d", code)
	}
	if code := call("GET", "/v1/groups/"+protocol.NewID().String(), tok, nil, nil); code != 404 {
		t.Fatalf("unknown group: %d", code)
	}
}
