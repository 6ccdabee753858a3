package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/market"
)

// row is one line of the attack catalogue's table.
type row struct {
	Scenario  string
	Outcome   string
	Wrong     string // wrong results released to the consumer
	Lost      int    // accepted tasks neither verified, failed nor canceled
	Conserved string // ledger sums to zero and its journal checks
	Paid      string // who was paid
	Took      time.Duration
	Failed    bool
}

type scenario struct {
	id   string // subtest name
	name string // table name
	slow bool   // skipped with -short
	run  func(t *testing.T, n *network, r *row)
}

// catalogue lists every scenario in the order they run on one network.
var catalogue = []scenario{
	{id: "Baseline", name: "honest network (baseline, via `aspen-node map`)", run: scBaseline},
	{id: "AlwaysWrong", name: "worker always returns wrong results", run: scAlwaysWrong},
	{id: "WrongFraction", name: "worker wrong on 1 task in 2", run: scWrongFraction},
	{id: "Sandbag", name: "reports 10× its real time, on its benchmark and every job (sandbagger)", run: scSandbag},
	{id: "Creep", name: "reports +14% on every job, over 40 tasks (creep)", run: scCreep},
	{id: "UnderReport", name: "reports 1 µs for every job (under-reporter)", run: scUnderReport},
	{id: "BeyondWindow", name: "claims more time than the verifier saw pass", run: scBeyondWindow},
	{id: "SlowJobs", name: "fast on its benchmark, holds every job 3× longer (really slow, reports honestly)", run: scSlowJobs},
	{id: "BenchLie", name: "fakes a 3× faster benchmark", run: scBenchLie},
	{id: "Guess", name: "copies/guesses a result without running", run: scGuess},
	{id: "Ring", name: "colluding pair agrees on wrong results", run: scRing},
	{id: "Vanish", name: "accepts tasks and vanishes", run: scVanish},
	{id: "CorruptBlobs", name: "serves result blobs with wrong bytes", run: scCorruptBlobs},
	{id: "Replay", name: "replays receipts and assignments, spends for others", run: scReplay},
	{id: "Forge", name: "forges the verifier's signature", run: scForge},
	{id: "FrontRun", name: "front-runs a consumer's bid (group-ID squatting)", run: scFrontRun},
	{id: "Flood", name: "floods offers and bids on gossip", run: scFlood},
	{id: "BadFrames", name: "malformed/oversized frames on every protocol", run: scBadFrames},
	{id: "FreshSigners", name: "2,500 offers from fresh signers via one relay", run: scFreshSigners},
	{id: "StrangerBlobs", name: "a stranger downloads blobs by CID", run: scStrangerBlobs},
	{id: "InvalidWasm", name: "invalid wasm", run: scInvalidWasm},
	{id: "MissingImport", name: "wasm importing what the sandbox lacks", run: scMissingImport},
	{id: "LoopForever", name: "wasm that loops forever", slow: true, run: scLoopForever},
	{id: "AllocForever", name: "wasm that allocates without end", run: scAllocForever},
	{id: "APIBadInput", name: "API without token / garbage JSON", run: scAPIBadInput},
	{id: "NoFunds", name: "consumer without funds", run: scNoFunds},
	{id: "KillWorker", name: "kill -9 a worker mid-task, restart", slow: true, run: scKillWorker},
	{id: "FreezeWorker", name: "worker cut off (frozen) mid-task, comes back", slow: true, run: scFreezeWorker},
	{id: "KillConsumer", name: "kill -9 the consumer mid-group, restart", slow: true, run: scKillConsumer},
	{id: "KillVerifier", name: "kill -9 the verifier mid-settlement, restart", run: scKillVerifier},
}

// TestAttackCatalogue runs every scenario of the catalogue against one
// network of real processes. Each scenario ends with the same checks: no
// wrong result released (except what a colluding ring slips past the spot
// checks, which the table reports), no accepted task lost, no task settled
// twice, money conserved (the verifier is stopped, its ledger checked
// offline and restarted) and every honest process still serving.
func TestAttackCatalogue(t *testing.T) {
	start := time.Now()
	n := startNetwork(t)
	var rows []row
	for _, s := range catalogue {
		r := row{Scenario: s.name, Wrong: "0", Conserved: "-"}
		began := time.Now()
		ok := t.Run(s.id, func(t *testing.T) {
			if s.slow && testing.Short() {
				r.Outcome = "skipped (-short)"
				t.Skip("slow scenario")
			}
			s.run(t, n, &r)
			n.endScenario(t, &r)
		})
		r.Took = time.Since(began)
		if ok && r.Outcome == "" && r.Conserved == "-" {
			continue // not selected by -run
		}
		if !ok {
			r.Failed = true
			if r.Outcome == "" {
				r.Outcome = "FAILED"
			} else {
				r.Outcome = "FAILED: " + r.Outcome
			}
			n.repair(t)
		}
		rows = append(rows, r)
	}
	table := renderTable(rows, time.Since(start))
	h := n.honest
	table += fmt.Sprintf("\nHonest replicas refused pay: the honest worker processes (h1–h3) had %d replicas judged (paid, too slow or refused); %s were not paid (%d too slow, %d of them against their own rating; %d refused; tolerance %d%%, slack %d ms). Busy slot time beyond the reported run time: %s.\n",
		h.judged, h.fraction(), h.tooSlow, h.tooSlowOwn, h.refused, tolerancePPM/10_000, slackMicros/1000, h.overheads())
	for _, note := range h.notes {
		t.Logf("honest replica not paid: %s", note)
	}
	if len(rows) == len(catalogue) && !testing.Short() && h.tooMany() {
		t.Errorf("honest replicas refused pay: %s, more than 1%%", h.fraction())
	}
	t.Logf("attack catalogue:\n%s", table)
	if *reportFlag {
		fmt.Println(table)
		if f := os.Getenv("ASPEN_REPORT_FILE"); f != "" {
			_ = os.WriteFile(f, []byte(table), 0o644)
		}
	}
	if t.Failed() {
		for _, p := range append([]*proc{n.v.proc}, procs(n.honestProcs)...) {
			t.Logf("---- %s log tail ----\n%s", p.name, p.tail(40))
		}
	}
}

func procs(ns []*nodeProc) []*proc {
	var out []*proc
	for _, n := range ns {
		out = append(out, n.proc)
	}
	return out
}

// endScenario checks what every scenario must leave behind: all honest
// processes serving, and the ledger conserved (checked offline).
func (n *network) endScenario(t *testing.T, r *row) {
	t.Helper()
	if err := n.serving(); err != nil {
		t.Errorf("not every honest process is serving: %v", err)
	}
	began := time.Now()
	ls := n.v.checkLedger(t)
	checked := time.Now()
	defer func() {
		t.Logf("ledger checked offline in %v, workers live again after %v", checked.Sub(began).Round(time.Millisecond), time.Since(checked).Round(time.Millisecond))
	}()
	r.Conserved = "yes"
	if !ls.Conserved() || ls.Escrow != 0 {
		r.Conserved = "no"
		t.Errorf("ledger: total %v, check %v, escrow left %v", ls.Total, ls.CheckErr, ls.Escrow)
	}
	n.waitWorkersLive(t, 60*time.Second)
	if r.Lost > 0 {
		t.Errorf("%d accepted tasks lost", r.Lost)
	}
}

// repair restarts whatever a failed scenario left down, so the next one
// runs on a whole network.
func (n *network) repair(t *testing.T) {
	if !n.v.running() {
		n.v.start()
	}
	for _, p := range n.honestProcs {
		p.thaw()
		if !p.running() {
			p.start()
		}
	}
	if err := poll(60*time.Second, func() (bool, error) {
		for _, w := range []*nodeProc{n.h1, n.h2, n.h3} {
			wi, ok := n.v.worker(w.id)
			if !ok || !wi.Live {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		t.Logf("network not repaired: %v", err)
	}
}

func renderTable(rows []row, took time.Duration) string {
	var b bytes.Buffer
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Attack catalogue — %s, %s/%s, %d CPUs, %s, total %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), host, took.Round(time.Second))
	fmt.Fprintln(&b, "| scenario | outcome | wrong results accepted | tasks lost | money conserved | who was paid | time |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s | %s |\n", r.Scenario, esc(r.Outcome), esc(r.Wrong), r.Lost, r.Conserved,
			esc(r.Paid), r.Took.Round(100*time.Millisecond))
	}
	return b.String()
}

func esc(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// ---- helpers for scenarios ----

// mapCLI runs `aspen-node map` against the consumer and returns its
// stdout, stderr and exit code.
func (n *network) mapCLI(t *testing.T, j job, extra ...string) (string, string, int) {
	t.Helper()
	dir := t.TempDir()
	mod := filepath.Join(dir, "job.wasm")
	if err := os.WriteFile(mod, j.module, 0o600); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, in := range j.inputs {
		lines = append(lines, string(in))
	}
	inf := filepath.Join(dir, "inputs.txt")
	if err := os.WriteFile(inf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"map", mod, "--lines", inf, "--max-price", j.maxPrice, "--timeout", j.timeout, "--data", n.c.data, "--quiet"}
	return n.c.cli(t, append(args, extra...)...)
}

// newestGroup is the consumer's most recent group.
func (n *network) newestGroup(t *testing.T) string {
	t.Helper()
	gs, err := n.c.client().Groups(context.Background())
	if err != nil || len(gs) == 0 {
		t.Fatalf("groups: %v (%d)", err, len(gs))
	}
	return gs[0].ID
}

// fill sets a row from a group's verdict.
func (n *network) fill(r *row, v verdict) {
	r.Wrong = fmt.Sprintf("%d/%d", v.wrongAccepted, v.tasks)
	r.Lost = v.lost
	r.Paid = n.paidSummary(v.vg)
}

// workerRuns counts a worker's replicas in a group and how many were paid.
func workerRuns(v verdict, id string) (runs, paid, strikes int) {
	for _, ti := range v.vg.Tasks {
		for _, rp := range ti.Replicas {
			if rp.Worker != id {
				continue
			}
			runs++
			if rp.Verdict == string(market.OutcomePaid) {
				paid++
			}
			if rp.Strike {
				strikes++
			}
		}
	}
	return
}
