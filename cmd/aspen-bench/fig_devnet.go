package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/store"
	"github.com/aspen-market/aspen/verifier"
)

// devnet is an in-process network on loopback like `aspen-node devnet`
// (cmd/aspen-node/devnet.go): a verifier, workers and a consumer, each
// with its own store and libp2p host, talking over TCP on 127.0.0.1. Jobs
// run in subprocess executors (re-executions of this binary) at normal
// priority — production workers use niceness 19, which on a machine
// shared with other work would measure the other work — and every sandbox
// shares the run's compiled-module cache.
type devnet struct {
	v        *verifier.Verifier
	workers  []*node.Node
	consumer *node.Node
}

const devnetMaxPrice = 20_000_000 // 20.00 per hour; workers ask 5.00, 7.50, …

func startDevnet(ctx context.Context, e *env, name string, workers int) (*devnet, error) {
	dir := filepath.Join(e.dir, name)
	sb := func(c *sandbox.Config) {
		c.CacheDir = e.cache
		c.Nice = 0
	}
	vcfg := verifier.DefaultConfig()
	vcfg.DataDir = filepath.Join(dir, "verifier")
	vcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	vcfg.APIAddr = ""
	vcfg.Logger = e.log.With("who", name+"/verifier")
	vcfg.Market.HeartbeatTimeout = 5 * time.Second
	vcfg.Market.SpeedTolerancePPM = 500_000 // as aspen-node devnet: all nodes share two cores
	vcfg.BenchmarkTasks = 2
	vcfg.ScheduleInterval = 20 * time.Millisecond
	if e.queueDepth > 0 {
		vcfg.QueueDepth = e.queueDepth
	}
	sb(&vcfg.Sandbox)
	// Each node's goroutines carry its name in CPU profiles
	// (-tagfocus node=verifier); they inherit it from New and Start.
	var v *verifier.Verifier
	var err error
	pprof.Do(ctx, pprof.Labels("node", "verifier"), func(context.Context) {
		if v, err = verifier.New(vcfg); err == nil {
			if err = v.Start(ctx); err != nil {
				v.Close()
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	d := &devnet{v: v}
	mk := func(i int, role node.Role) (*node.Node, error) {
		cfg := node.DefaultConfig()
		who := "consumer"
		if role == node.RoleWorker {
			who = fmt.Sprintf("worker-%d", i+1)
		}
		cfg.DataDir = filepath.Join(dir, who)
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		cfg.APIAddr = ""
		cfg.Verifier = v.AddrInfo()
		cfg.Role = role
		cfg.MinPrice = protocol.Micros(5_000_000 + 2_500_000*i)
		cfg.Owner = fmt.Sprintf("owner-%d", i+1)
		cfg.OfferInterval = 2 * time.Second
		cfg.HeartbeatInterval = 500 * time.Millisecond
		cfg.Logger = e.log.With("who", name+"/"+who)
		sb(&cfg.Sandbox)
		var n *node.Node
		var err error
		pprof.Do(ctx, pprof.Labels("node", strings.TrimRight(who, "0123456789-")), func(context.Context) {
			if n, err = node.New(cfg); err == nil {
				if err = n.Start(ctx); err != nil {
					n.Close()
				}
			}
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", who, err)
		}
		return n, nil
	}
	for i := range workers {
		n, err := mk(i, node.RoleWorker)
		if err != nil {
			d.close()
			return nil, err
		}
		d.workers = append(d.workers, n)
	}
	if d.consumer, err = mk(0, node.RoleConsumer); err != nil {
		d.close()
		return nil, err
	}
	// Every worker benchmarked and rated, the consumer funded.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		rated := 0
		for _, w := range d.workers {
			if w.Info().Rating != nil {
				rated++
			}
		}
		if rated == len(d.workers) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.close()
			return nil, fmt.Errorf("only %d of %d workers rated", rated, len(d.workers))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := v.Credit(ctx, d.consumer.ID(), 1_000_000*protocol.MicrosPerUnit); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *devnet) close() {
	if d.consumer != nil {
		d.consumer.Close()
	}
	for _, w := range d.workers {
		w.Close()
	}
	if d.v != nil {
		d.v.Close()
	}
}

// submitAndWait submits one group and waits until every task is verified
// at the consumer; it returns the time from the submit call to the last
// verification.
func (d *devnet) submitAndWait(ctx context.Context, mod []byte, inputs [][]byte, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	id, err := d.consumer.SubmitGroup(ctx, node.GroupSpec{Name: "bench", Module: mod, Inputs: inputs,
		MaxPrice: devnetMaxPrice, Replicas: 2, Timeout: 10 * time.Second})
	if err != nil {
		return 0, err
	}
	return d.waitVerified(ctx, t0, id, timeout)
}

// waitVerified waits for every result of one group as a client does, on
// the consumer's results cursor (ResultsSince with a wait: woken when a
// result becomes visible, no polling), and returns the time since t0.
func (d *devnet) waitVerified(ctx context.Context, t0 time.Time, id protocol.ID, timeout time.Duration) (time.Duration, error) {
	deadline := t0.Add(timeout)
	var since uint64
	for {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			g, _ := d.consumer.Group(id)
			return time.Since(t0), fmt.Errorf("%d of %d tasks verified after %v%s", g.Verified, g.Tasks, time.Since(t0).Round(time.Millisecond), d.stuck([]protocol.ID{id}))
		}
		page, err := d.consumer.ResultsSince(ctx, id, uint32(since), node.MaxResultsLimit, left)
		if err != nil {
			return 0, err
		}
		if err := d.groupFailed(id, page.Group); err != nil {
			return 0, err
		}
		if page.Done {
			return time.Since(t0), nil
		}
		if since, err = strconv.ParseUint(page.Next, 10, 32); err != nil {
			return 0, fmt.Errorf("results cursor %q: %w", page.Next, err)
		}
	}
}

// groupFailed says why a group has failed or canceled tasks, if it has.
func (d *devnet) groupFailed(id protocol.ID, g node.GroupStatus) error {
	if g.Failed == 0 && g.Canceled == 0 {
		return nil
	}
	ts, _ := d.consumer.Tasks(id)
	reason := ""
	for _, t := range ts {
		if t.Reason != "" {
			reason = t.Reason
			break
		}
	}
	return fmt.Errorf("group %s: %d tasks failed: %s", id, g.Failed+g.Canceled, reason)
}

// waitGroups polls the consumer until the groups are all verified, every
// millisecond (a few thousand tasks take seconds; polling faster would
// only take CPU from the devnet it measures).
func (d *devnet) waitGroups(ctx context.Context, t0 time.Time, ids []protocol.ID, timeout time.Duration) (time.Duration, error) {
	deadline := t0.Add(timeout)
	for {
		done, verified, total := true, 0, 0
		for _, id := range ids {
			g, err := d.consumer.Group(id)
			if err != nil {
				return 0, err
			}
			if err := d.groupFailed(id, g); err != nil {
				return 0, err
			}
			verified += g.Verified
			total += g.Tasks
			if g.Verified < g.Tasks {
				done = false
			}
		}
		if done {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Since(t0), fmt.Errorf("%d of %d tasks verified after %v%s", verified, total, time.Since(t0).Round(time.Millisecond), d.stuck(ids))
		}
		time.Sleep(time.Millisecond)
	}
}

// calibrateSpin finds the spin count of a job that computes for about
// target (the guest's own CPU time) and returns it with that job's median
// run time measured over several runs.
func calibrateSpin(ctx context.Context, e *env, mod []byte, target time.Duration) (int, time.Duration, error) {
	s, err := newSandbox(ctx, e, sandbox.Subprocess, nil)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	id := protocol.BlobCID(mod).String()
	measure := func(n int) (time.Duration, error) {
		var ds durations
		for range 15 {
			r, err := s.Run(ctx, sandbox.Job{ModuleID: id, Module: mod, Input: spinInput(n, "calibrate")})
			if err != nil || r.Status != sandbox.StatusOK {
				return 0, fmt.Errorf("spin job: %v %s", err, r.Status)
			}
			ds = append(ds, r.Duration)
		}
		return ds.pct(0.5), nil
	}
	const probe = 2_000_000
	d, err := measure(probe)
	if err != nil {
		return 0, 0, err
	}
	n := int(float64(probe) * float64(target) / float64(max(d, time.Microsecond)))
	d, err = measure(n)
	return n, d, err
}

// figLatency: single-task groups (a ~1 ms job, two replicas) submitted one
// after another through node.SubmitGroup on the consumer; latency is from
// the call to the task verified at the consumer (result stored locally),
// and overhead is that minus the job's own run time.
func figLatency(ctx context.Context, e *env) ([]Row, error) {
	n, warm := 200, 10
	if e.quick {
		n = 30
	}
	mod := spinEchoWasm()
	spin, own, err := calibrateSpin(ctx, e, mod, time.Millisecond)
	if err != nil {
		return nil, err
	}
	d, err := startDevnet(ctx, e, "latency", 4)
	if err != nil {
		return nil, err
	}
	defer d.close()
	var lat durations
	var v0 map[string]uint64
	for i := range n + warm {
		if i == warm {
			v0 = d.v.Stats().Verdicts
		}
		l, err := d.submitAndWait(ctx, mod, [][]byte{spinInput(spin, fmt.Sprintf("task-%d", i))}, 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("job %d: %w", i, err)
		}
		if i >= warm {
			lat = append(lat, l)
		}
	}
	over := func(p float64) float64 { return ms(lat.pct(p) - own) }
	rows := []Row{
		Row{Figure: "3 end-to-end overhead p50 (1 ms job, 2 replicas, verified at the consumer)", Value: over(0.5), Unit: "ms"}.
			withBaseline(ms(own), "ms", "job's own run time").target("value", "<=", 6).
			note("%d single-task groups one after another; latency p50 %.1f ms, mean %.1f ms, min %.1f ms", len(lat), ms(lat.pct(0.5)), ms(lat.mean()), ms(lat.min())),
		Row{Figure: "3 end-to-end overhead p99", Value: over(0.99), Unit: "ms"}.
			withBaseline(ms(own), "ms", "job's own run time").target("value", "<=", 25).
			note("latency p99 %.1f ms, max %.1f ms", ms(lat.pct(0.99)), ms(slices.Max(lat))).
			note("replicas %s; workers rated %s", fmtVerdicts(verdictDelta(v0, d.v.Stats().Verdicts)), ratedSpeeds(d.v)),
	}
	return rows, nil
}

// figThroughput: verified tasks per second through one verifier on a
// devnet with four workers (tiny echo job, two replicas), and the verifier
// alone driven by fake workers and a fake consumer.
func figThroughput(ctx context.Context, e *env) ([]Row, error) {
	var alone float64
	var arow Row
	var err error
	pprof.Do(ctx, pprof.Labels("part", "verifier-alone"), func(ctx context.Context) {
		alone, arow, err = verifierAlone(ctx, e)
	})
	if err != nil {
		return nil, fmt.Errorf("verifier alone: %w", err)
	}
	groups, per := 5, 1000
	if e.quick {
		groups, per = 2, 250
	}
	var rows []Row
	pprof.Do(ctx, pprof.Labels("part", "devnet"), func(ctx context.Context) {
		var row Row
		row, err = devnetThroughput(ctx, e, groups, per, alone)
		rows = append(rows, row)
	})
	return append(rows, arow), err
}

func devnetThroughput(ctx context.Context, e *env, groups, per int, alone float64) (Row, error) {
	d, err := startDevnet(ctx, e, "throughput", 4)
	if err != nil {
		return Row{}, err
	}
	defer d.close()
	mod := spinEchoWasm()
	// Warm up: the module reaches every worker's executor once.
	if _, err := d.submitAndWait(ctx, mod, [][]byte{spinInput(0, "a"), spinInput(0, "b"), spinInput(0, "c"), spinInput(0, "d")}, time.Minute); err != nil {
		return Row{}, err
	}
	s0, v0 := d.storeStats(), d.v.Stats().Verdicts
	t0, c0 := time.Now(), cpuTime()
	var ids []protocol.ID
	for g := range groups {
		inputs := make([][]byte, per)
		for i := range inputs {
			inputs[i] = spinInput(0, fmt.Sprintf("g%d-task-%d", g, i))
		}
		id, err := d.consumer.SubmitGroup(ctx, node.GroupSpec{Name: "throughput", Module: mod, Inputs: inputs,
			MaxPrice: devnetMaxPrice, Replicas: 2, Timeout: 10 * time.Second})
		if err != nil {
			return Row{}, err
		}
		ids = append(ids, id)
	}
	submitted := time.Since(t0)
	took, err := d.waitGroups(ctx, t0, ids, 2*time.Minute)
	cpu := cpuTime() - c0
	if err != nil {
		return Row{}, err
	}
	tasks := groups * per
	rate := float64(tasks) / took.Seconds()
	s1 := d.storeStats()
	fsyncs := func(who string) float64 { return float64(s1[who].Syncs-s0[who].Syncs) / float64(tasks) }
	row := Row{Figure: "4 devnet throughput: verified tasks/s (verifier, 4 workers, consumer in one process; tiny job, 2 replicas)", Value: rate, Unit: "tasks/s"}.
		withBaseline(alone, "tasks/s", "verifier alone").target("value", ">=", 1000).
		note("%d tasks in %d groups in %.1f s (submits took %.1f s); this process used %.0f µs CPU per task (executors not included); fsyncs per task: verifier %.2f, workers %.2f, consumer %.2f",
			tasks, groups, took.Seconds(), submitted.Seconds(), us(cpu)/float64(tasks), fsyncs("verifier"), fsyncs("workers"), fsyncs("consumer")).
		note("replicas %s; workers rated %s", fmtVerdicts(verdictDelta(v0, d.v.Stats().Verdicts)), ratedSpeeds(d.v))
	return row, nil
}

// storeStats sums the store counters of the verifier, the workers and the
// consumer.
func (d *devnet) storeStats() map[string]store.Stats {
	add := func(a, b store.Stats) store.Stats {
		return store.Stats{DurableWrites: a.DurableWrites + b.DurableWrites, Commits: a.Commits + b.Commits, Syncs: a.Syncs + b.Syncs}
	}
	m := map[string]store.Stats{"verifier": d.v.Stats().Store, "consumer": d.consumer.StoreStats()}
	for _, w := range d.workers {
		m["workers"] = add(m["workers"], w.StoreStats())
	}
	return m
}

// stuck describes, from the verifier's side, the unfinished tasks of ids.
func (d *devnet) stuck(ids []protocol.ID) string {
	counts := map[string]int{}
	example := map[string]string{}
	for _, id := range ids {
		g, err := d.v.Group(id)
		if err != nil {
			counts["verifier: "+err.Error()]++
			continue
		}
		for _, t := range g.Tasks {
			if t.Released {
				continue
			}
			var reps []string
			for _, r := range t.Replicas {
				reps = append(reps, r.State+"/"+r.Verdict)
			}
			k := fmt.Sprintf("%s posted=%v replicas=%v", t.State, t.Posted, reps)
			counts[k]++
			if t.Reason != "" {
				example[k] = t.Reason
			}
		}
	}
	var b strings.Builder
	for k, n := range counts {
		fmt.Fprintf(&b, "; verifier: %d tasks %s %s", n, k, example[k])
	}
	return b.String()
}
