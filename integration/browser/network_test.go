package browser

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/examples"
	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier"
	verifierdash "github.com/aspen-market/aspen/verifier/dashboard"
)

// network is an in-process network like `aspen-node devnet` starts:
// a verifier, workers and a consumer on loopback.
type network struct {
	verifier *verifier.Verifier
	workers  []*node.Node
	consumer *node.Node
}

func startNetwork(t *testing.T, workers int) *network {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	vcfg := verifier.DefaultConfig()
	vcfg.DataDir = filepath.Join(dir, "verifier")
	vcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	vcfg.APIAddr = "127.0.0.1:0"
	vcfg.Market.SpotCheckPPM = 500_000 // half the tasks: the operator page shows spot checks
	vcfg.Market.HeartbeatTimeout = 5 * time.Second
	vcfg.BenchmarkTasks = 1
	vcfg.ScheduleInterval = 20 * time.Millisecond
	v, err := verifier.New(vcfg)
	if err != nil {
		t.Fatalf("verifier: %v", err)
	}
	if err := v.Start(ctx); err != nil {
		v.Close()
		t.Fatalf("verifier: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	nw := &network{verifier: v}
	vinfo := v.AddrInfo()
	for i := 0; i < workers; i++ {
		cfg := node.DefaultConfig()
		cfg.DataDir = filepath.Join(dir, fmt.Sprintf("worker-%d", i+1))
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		cfg.APIAddr = "127.0.0.1:0"
		cfg.Verifier = vinfo
		cfg.Role = node.RoleWorker
		// Dear machines, so that even millisecond jobs earn whole micro-units.
		cfg.MinPrice = protocol.Micros(36_000_000 + 3_600_000*i) // 36.00, 39.60 … per hour
		cfg.Owner = fmt.Sprintf("owner-%d", i+1)
		cfg.OfferInterval = 2 * time.Second
		cfg.HeartbeatInterval = 500 * time.Millisecond
		n, err := node.New(cfg)
		if err != nil {
			t.Fatalf("worker %d: %v", i+1, err)
		}
		if err := n.Start(ctx); err != nil {
			n.Close()
			t.Fatalf("worker %d: %v", i+1, err)
		}
		t.Cleanup(func() { n.Close() })
		nw.workers = append(nw.workers, n)
	}
	cfg := node.DefaultConfig()
	cfg.DataDir = filepath.Join(dir, "consumer")
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIAddr = "127.0.0.1:0"
	cfg.Verifier = vinfo
	cfg.Role = node.RoleConsumer
	c, err := node.New(cfg)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		c.Close()
		t.Fatalf("consumer: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	nw.consumer = c

	deadline := time.Now().Add(90 * time.Second)
	for {
		rated := 0
		for _, w := range nw.workers {
			if w.Info().Rating != nil {
				rated++
			}
		}
		if rated == len(nw.workers) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d workers rated in 90s", rated, len(nw.workers))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nw
}

// operatorServer serves the verifier's operator API with its dashboard
// mounted the way the verifier mounts it: /v1/... to the API (token
// required), everything else to the dashboard's static files.
func operatorServer(t *testing.T, v *verifier.Verifier) string {
	api, ui := v.Handler(), verifierdash.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			api.ServeHTTP(w, r)
			return
		}
		ui.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDashboardNetwork runs a job group through a real network and
// watches it in the dashboards: the consumer's group progresses to
// verified with per-task outcomes and results, each worker's page shows
// the jobs it ran with their value and its earnings, and the operator's
// page shows the rated workers, the group's verdicts and a balanced ledger.
func TestDashboardNetwork(t *testing.T) {
	ctx := browser(t)
	nw := startNetwork(t, 2)
	c := nw.consumer
	if err := nw.verifier.Credit(context.Background(), c.ID(), 1000*protocol.MicrosPerUnit); err != nil {
		t.Fatalf("credit: %v", err)
	}

	// The consumer page before anything is submitted, with the balance.
	run(t, ctx, 30*time.Second, chromedp.Navigate(base(c)+"/#token="+c.Token()))
	waitFor(t, ctx, "consumer page with balance", `document.body.dataset.view === "consumer" && document.querySelector("#c-balance").textContent === "1000.00"`, pageText, 30*time.Second)

	// Submit a group and watch it progress.
	module, err := examples.Module("primes")
	if err != nil {
		t.Fatal(err)
	}
	const tasks = 6
	inputs := make([][]byte, tasks)
	for i := range inputs {
		inputs[i] = fmt.Appendf(nil, "%d %d", i*1_000_000, (i+1)*1_000_000)
	}
	type mapOut struct {
		res []client.Result
		err error
	}
	done := make(chan mapOut, 1)
	mctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	go func() {
		cl := client.New(base(c), c.Token())
		res, err := cl.Map(mctx, module, inputs, client.MapOptions{Name: "browser-primes", MaxPrice: 100 * protocol.MicrosPerUnit, Replicas: 2, Timeout: time.Minute})
		done <- mapOut{res, err}
	}()
	waitFor(t, ctx, "the group on the consumer page", `document.querySelector("#groups .group")`, pageText, 60*time.Second)
	var groupID string
	eval(t, ctx, `document.querySelector("#groups .group").dataset.id`, &groupID)
	waitFor(t, ctx, "the group verified", `document.querySelector("#groups .group").dataset.state === "verified"`, pageText, 3*time.Minute)
	var cardText string
	eval(t, ctx, `document.querySelector("#groups .group").innerText`, &cardText)
	if !strings.Contains(cardText, "browser-primes") || !strings.Contains(cardText, fmt.Sprintf("%d / %d done", tasks, tasks)) || !strings.Contains(cardText, fmt.Sprintf("%d verified", tasks)) {
		t.Errorf("group card: %q", cardText)
	}
	out := <-done
	if out.err != nil {
		t.Fatalf("map: %v", out.err)
	}
	screenshot(t, ctx, "net-consumer")

	// Per-task status and verification outcome.
	run(t, ctx, 30*time.Second, chromedp.Navigate(base(c)+"/#/group/"+groupID))
	waitFor(t, ctx, "task table", fmt.Sprintf(`document.querySelectorAll("#task-table tr.task[data-state=verified]").length === %d`, tasks), pageText, 30*time.Second)
	var outcome string
	eval(t, ctx, `document.querySelector("#task-table tr.task td:nth-child(3)").innerText`, &outcome)
	if !strings.Contains(outcome, "ok") {
		t.Errorf("task outcome %q, want ok", outcome)
	}
	screenshot(t, ctx, "net-group")

	// The results, in input order, match what the client got.
	run(t, ctx, 30*time.Second, chromedp.Navigate(base(c)+"/#/group/"+groupID+"/results"))
	waitFor(t, ctx, "results", fmt.Sprintf(`document.querySelectorAll("#results .result").length === %d`, tasks), pageText, 30*time.Second)
	for _, i := range []int{0, tasks - 1} {
		var got string
		eval(t, ctx, fmt.Sprintf(`document.querySelector('#results .result[data-index="%d"] pre.stdout').textContent`, i), &got)
		if want := string(out.res[i].Stdout); got != want || want == "" {
			t.Errorf("result %d on the page %q, client got %q", i, got, want)
		}
	}
	screenshot(t, ctx, "net-results")

	// Each worker's page: the jobs it ran, their value, its earnings.
	jobsTotal := 0
	for i, w := range nw.workers {
		run(t, ctx, 30*time.Second, chromedp.Navigate(base(w)+"/#token="+w.Token()))
		waitFor(t, ctx, "worker page", `document.body.dataset.view === "worker" && document.querySelector("#r-speed").textContent !== "–" && document.querySelector("#r-speed").textContent !== "not rated yet"`, pageText, 30*time.Second)
		jobs, err := w.Jobs(0)
		if err != nil {
			t.Fatal(err)
		}
		var rows int
		waitFor(t, ctx, "job history", fmt.Sprintf(`document.querySelectorAll("#job-table tr.job").length === %d`, min(len(jobs), 200)), pageText, 30*time.Second)
		eval(t, ctx, `document.querySelectorAll("#job-table tr.job").length`, &rows)
		jobsTotal += len(jobs)
		for _, j := range jobs {
			if j.Group != groupID {
				continue
			}
			var val string
			eval(t, ctx, fmt.Sprintf(`(r => r && r.lastElementChild.textContent)(document.querySelector('#job-table tr.job[data-group=%q][data-index="%d"]'))`, j.Group, j.Index), &val)
			if val != j.Value.String() {
				t.Errorf("worker %d job %d: value on the page %q, want %q", i+1, j.Index, val, j.Value.String())
			}
			break
		}
		if len(jobs) > 0 {
			// Earned comes from the verifier's statement; the chart from the records.
			waitFor(t, ctx, "earnings", `document.querySelector("#w-earned").textContent !== "–" && document.querySelector("#chart-earnings path.line")`, pageText, 30*time.Second)
			waitFor(t, ctx, "throughput bars", `document.querySelectorAll("#chart-throughput rect.barr").length > 0`, pageText, 10*time.Second)
			var earned string
			eval(t, ctx, `document.querySelector("#w-earned").textContent`, &earned)
			st, err := w.Statement(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if earned != st.Earned.String() {
				t.Logf("worker %d: page shows earned %s, statement now %s", i+1, earned, st.Earned)
			}
			if st.Earned <= 0 {
				t.Errorf("worker %d ran %d jobs but earned %s", i+1, len(jobs), st.Earned)
			}
		}
		screenshot(t, ctx, fmt.Sprintf("net-worker-%d", i+1))
	}
	if jobsTotal < tasks*2 {
		t.Errorf("workers ran %d jobs, want at least %d (2 replicas × %d tasks)", jobsTotal, 2*tasks, tasks)
	}

	// The operator's dashboard.
	op := operatorServer(t, nw.verifier)
	if got := status(t, op+"/v1/workers", ""); got != 401 {
		t.Errorf("operator API without token: %d, want 401", got)
	}
	run(t, ctx, 30*time.Second, chromedp.Navigate(op+"/"))
	waitFor(t, ctx, "operator login", `document.body.dataset.state === "login"`, pageText, 15*time.Second)
	run(t, ctx, 30*time.Second, chromedp.Navigate(op+"/#token="+nw.verifier.Token()))
	waitFor(t, ctx, "workers table", `document.querySelectorAll("#worker-table tr.worker").length === 2`, pageText, 30*time.Second)
	var workersText string
	eval(t, ctx, `document.querySelector("#worker-table").innerText`, &workersText)
	for _, want := range []string{"owner-1", "owner-2", "passed"} {
		if !strings.Contains(workersText, want) {
			t.Errorf("workers table lacks %q:\n%s", want, workersText)
		}
	}
	screenshot(t, ctx, "op-workers")

	run(t, ctx, 30*time.Second, chromedp.Navigate(op+"/#/worker/"+nw.workers[0].ID().String()))
	waitFor(t, ctx, "worker detail", `document.querySelector("#chart-speed path.line") || document.querySelector("#chart-speed circle")`, pageText, 15*time.Second)
	screenshot(t, ctx, "op-worker")

	run(t, ctx, 30*time.Second, chromedp.Navigate(op+"/#/group/"+groupID))
	waitFor(t, ctx, "group verdicts", fmt.Sprintf(`document.querySelectorAll("#task-table tr.task[data-state=verified]").length === %d && document.querySelector("#task-table").innerText.includes("paid")`, tasks), pageText, 30*time.Second)
	screenshot(t, ctx, "op-group")

	run(t, ctx, 30*time.Second, chromedp.Navigate(op+"/#/market"))
	waitFor(t, ctx, "market offers", `document.querySelectorAll("#offer-table tr.offer").length >= 1`, pageText, 30*time.Second)
	screenshot(t, ctx, "op-market")

	run(t, ctx, 30*time.Second, chromedp.Navigate(op+"/#/ledger"))
	waitFor(t, ctx, "balanced ledger", `document.querySelector("#l-check").textContent.startsWith("balanced") && document.querySelector("#l-operator").textContent !== "0.00" && document.querySelectorAll("#journal-table tr.entry").length > 0`, pageText, 30*time.Second)
	screenshot(t, ctx, "op-ledger")

	// Every operator page fits a phone.
	run(t, ctx, 30*time.Second, emulatePhone())
	for _, view := range []string{"workers", "market", "group/" + groupID, "ledger"} {
		run(t, ctx, 30*time.Second, chromedp.Navigate(op+"/#/"+view))
		waitFor(t, ctx, view+" on a phone", `document.body.dataset.view === "`+strings.Split(view, "/")[0]+`" && document.querySelectorAll("tbody tr").length > 0`, pageText, 15*time.Second)
		time.Sleep(300 * time.Millisecond) // let the first poll render
		noOverflow(t, ctx, "operator "+view)
		screenshot(t, ctx, "op-phone-"+strings.Split(view, "/")[0])
	}
	// And the consumer's group page.
	run(t, ctx, 30*time.Second, chromedp.Navigate(base(c)+"/#token="+c.Token()))
	run(t, ctx, 30*time.Second, chromedp.Navigate(base(c)+"/#/group/"+groupID))
	waitFor(t, ctx, "group page on a phone", `document.querySelectorAll("#task-table tr.task").length > 0`, pageText, 15*time.Second)
	noOverflow(t, ctx, "consumer group")
	screenshot(t, ctx, "phone-group")
}
