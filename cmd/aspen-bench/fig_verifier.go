package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/verifier"
)

// stubRunner stands in for the verifier's sandbox where the figure is
// about the verifier's own work: every job "runs" at once, echoes its input
// (like the spin-echo module with spin 0), meters stubWork and takes
// stubMicros. Fake workers answer every assignment the same way, benchmarks
// included (workers cannot tell them from real jobs), so they are rated
// without running anything: a possible claim (speed 1.0, within the window
// the verifier observes), rated by the busy slot time the verifier sees.
type stubRunner struct{}

const (
	stubMicros = 1
	stubWork   = stubMicros * 1000 // speed 1.0
)

func (stubRunner) Run(ctx context.Context, job sandbox.Job) (sandbox.Result, error) {
	return sandbox.Result{Status: sandbox.StatusOK, Stdout: job.Input, Duration: stubMicros * time.Microsecond, Work: stubWork}, nil
}
func (stubRunner) Close() error { return nil }

// fakeHost is a libp2p host on loopback with its own key, pinned to the
// verifier.
func fakeHost(ctx context.Context, ver peer.AddrInfo) (*p2p.Host, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	cfg := p2p.DefaultConfig()
	cfg.Key = key
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Pinned = []peer.AddrInfo{ver}
	cfg.RequestTimeout = 30 * time.Second
	h, err := p2p.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := h.Start(ctx); err != nil {
		h.Close()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := h.Connect(cctx, ver); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func addrStrings(h *p2p.Host) []string {
	var out []string
	for _, a := range h.AddrInfo().Addrs {
		out = append(out, a.String())
	}
	return out
}

// fakeWorker acknowledges every assignment from the verifier and answers
// it with one receipt carrying precomputed results: the echo job's output
// is its input, so nothing runs. Both replicas report the same time.
type fakeWorker struct {
	h     *p2p.Host
	ver   peer.ID
	ctx   context.Context
	wg    sync.WaitGroup
	rated atomic.Bool
	errs  atomic.Int64
	hbSeq atomic.Uint64
}

func startFakeWorker(ctx context.Context, ver peer.AddrInfo, slots uint32) (*fakeWorker, error) {
	h, err := fakeHost(ctx, ver)
	if err != nil {
		return nil, err
	}
	w := &fakeWorker{h: h, ver: ver.ID, ctx: ctx}
	h.Handle(protocol.ProtoAssign, w.handleAssign)
	reg := &protocol.Register{Worker: h.ID(), Owner: "owner-" + h.ID().String(), MinPrice: 1_000_000, Slots: slots, Addrs: addrStrings(h),
		Nonce: protocol.NewID(), Time: time.Now().UnixMilli()}
	var ack protocol.Ack
	if err := h.Request(ctx, ver.ID, protocol.ProtoRegister, reg, &ack); err != nil {
		h.Close()
		return nil, fmt.Errorf("register: %w", err)
	}
	w.wg.Add(1)
	go w.heartbeats()
	return w, nil
}

func (w *fakeWorker) heartbeats() {
	defer w.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		var ack protocol.Ack
		_ = w.h.Request(w.ctx, w.ver, protocol.ProtoHeartbeat, &protocol.Heartbeat{Worker: w.h.ID(), Seq: w.hbSeq.Add(1), Time: time.Now().UnixMilli()}, &ack)
		if len(ack.Data) > 0 {
			w.rated.Store(true)
		}
	}
}

func (w *fakeWorker) close() {
	w.h.Close()
	w.wg.Wait()
}

// output is the encoded Output of a successful run printing stdout, and
// its CID.
func output(stdout []byte) ([]byte, cid.Cid) {
	enc := protocol.EncodeOutput(&protocol.Output{Status: protocol.StatusOK, Stdout: stdout})
	return enc, protocol.BlobCID(enc)
}

func (w *fakeWorker) handleAssign(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	if env.Signer != w.ver {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "not the verifier")
	}
	var asg protocol.Assignment
	if err := env.Decode(&asg); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	rc := &protocol.Receipt{Worker: w.h.ID(), Assignment: asg.ID, Group: asg.Group}
	for _, t := range asg.Tasks {
		enc, c := output(t.Inline) // every input is inline; the echo's output is its input
		rc.Results = append(rc.Results, protocol.TaskResult{Index: t.Index, Replica: t.Replica, Status: protocol.StatusOK,
			Result: c, ResultSize: uint64(len(enc)), ExecMicros: stubMicros, Work: stubWork, Inline: enc})
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		var ack protocol.Ack
		if err := w.h.Request(w.ctx, w.ver, protocol.ProtoReceipt, rc, &ack); err != nil {
			w.errs.Add(1)
			return
		}
		if len(ack.Data) > 0 {
			w.rated.Store(true) // a benchmark passed
		}
	}()
	return &protocol.Ack{Ref: asg.ID, OK: true, Count: uint32(len(asg.Tasks))}, nil
}

// fakeConsumer submits groups straight to the verifier and counts the
// verified tasks it is released.
type fakeConsumer struct {
	h        *p2p.Host
	ver      peer.ID
	verified atomic.Int64
	failed   atomic.Int64
	reason   atomic.Value
}

func (c *fakeConsumer) handleRelease(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	if env.Signer != c.ver {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "not the verifier")
	}
	var rel protocol.Release
	if err := env.Decode(&rel); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	for _, t := range rel.Tasks {
		if t.Outcome == protocol.OutcomeVerified {
			c.verified.Add(1)
		} else {
			c.failed.Add(1)
			c.reason.Store(t.Reason)
		}
	}
	return &protocol.Ack{Ref: rel.Group, OK: true, Count: uint32(len(rel.Tasks))}, nil
}

func (c *fakeConsumer) submit(ctx context.Context, mod []byte, inputs [][]byte) error {
	sub := &protocol.Submit{Consumer: c.h.ID(), Group: protocol.NewID(), Module: protocol.BlobCID(mod), ModuleSize: uint64(len(mod)),
		MaxPrice: devnetMaxPrice, Replicas: 2, TimeoutMillis: 10_000, MaxMemory: 64 << 20, Addrs: addrStrings(c.h),
		Time: time.Now().UnixMilli()}
	for i, in := range inputs {
		sub.Tasks = append(sub.Tasks, protocol.TaskInput{Index: uint32(i), Input: protocol.BlobCID(in), Size: uint64(len(in)), Inline: in})
	}
	var ack protocol.Ack
	if err := c.h.Request(ctx, c.ver, protocol.ProtoSubmit, sub, &ack); err != nil {
		return err
	}
	if !ack.OK {
		return fmt.Errorf("submit refused: %s", ack.Error)
	}
	return nil
}

// verifierAlone drives a real verifier (its store, ledger, host, loops)
// with fake workers and a fake consumer over loopback: every task costs
// the verifier a submit, a signed assignment (batched per worker and
// group), two receipts (batched likewise), a settlement in the durable
// ledger and a release. No spot checks (the verifier would run jobs).
func verifierAlone(ctx context.Context, e *env) (float64, Row, error) {
	const workers = 8
	groups, per := 10, 1000
	if e.quick {
		groups, per = 2, 500
	}
	cfg := verifier.DefaultConfig()
	cfg.DataDir = filepath.Join(e.dir, "verifier-alone")
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIAddr = ""
	cfg.Logger = e.log.With("who", "verifier-alone")
	cfg.Runner = stubRunner{}
	cfg.Market.SpotCheckPPM = 0
	cfg.BenchmarkTasks = 1
	cfg.ScheduleInterval = 20 * time.Millisecond
	v, err := verifier.New(cfg)
	if err != nil {
		return 0, Row{}, err
	}
	defer v.Close()
	if err := v.Start(ctx); err != nil {
		return 0, Row{}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ws []*fakeWorker
	defer func() {
		cancel()
		for _, w := range ws {
			w.close()
		}
	}()
	for range workers {
		w, err := startFakeWorker(wctx, v.AddrInfo(), 64)
		if err != nil {
			return 0, Row{}, err
		}
		ws = append(ws, w)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		rated := 0
		for _, w := range ws {
			if w.rated.Load() {
				rated++
			}
		}
		if rated == len(ws) {
			break
		}
		if time.Now().After(deadline) {
			return 0, Row{}, fmt.Errorf("only %d of %d fake workers rated", rated, len(ws))
		}
		time.Sleep(20 * time.Millisecond)
	}
	ch, err := fakeHost(ctx, v.AddrInfo())
	if err != nil {
		return 0, Row{}, err
	}
	defer ch.Close()
	c := &fakeConsumer{h: ch, ver: v.ID()}
	ch.Handle(protocol.ProtoRelease, c.handleRelease)
	if err := v.Credit(ctx, ch.ID(), 1_000_000*protocol.MicrosPerUnit); err != nil {
		return 0, Row{}, err
	}
	mod := spinEchoWasm()
	mk := func(g, n int) [][]byte {
		in := make([][]byte, n)
		for i := range in {
			in[i] = spinInput(0, fmt.Sprintf("g%d-task-%d", g, i))
		}
		return in
	}
	// Warm-up group.
	if err := c.submit(ctx, mod, mk(-1, 100)); err != nil {
		return 0, Row{}, err
	}
	if err := waitCount(ctx, &c.verified, 100, time.Minute); err != nil {
		return 0, Row{}, err
	}
	c.verified.Store(0)
	total := groups * per
	v0 := v.Stats().Verdicts
	t0, c0 := time.Now(), cpuTime()
	errc := make(chan error, groups)
	for g := range groups {
		go func() { errc <- c.submit(ctx, mod, mk(g, per)) }()
	}
	for range groups {
		if err := <-errc; err != nil {
			return 0, Row{}, err
		}
	}
	err = waitCount(ctx, &c.verified, int64(total), 2*time.Minute)
	took, cpu := time.Since(t0), cpuTime()-c0
	if f := c.failed.Load(); f > 0 {
		return 0, Row{}, fmt.Errorf("%d tasks failed: %v", f, c.reason.Load())
	}
	if err != nil {
		return 0, Row{}, err
	}
	// The figure measures the path of honest, paid work: a replica the
	// market's rules did not pay (too slow, an impossible claim) would
	// settle differently, and means the fake workers no longer pass as
	// honest ones.
	verdicts := verdictDelta(v0, v.Stats().Verdicts)
	if unpaid := sumVerdicts(verdicts) - verdicts[string(market.OutcomePaid)]; unpaid > 0 {
		return 0, Row{}, fmt.Errorf("%d of %d replicas not paid (%s): the fake workers' receipts no longer pass the market's rules",
			unpaid, 2*total, fmtVerdicts(verdicts))
	}
	rate := float64(total) / took.Seconds()
	row := Row{Figure: "4 verifier alone: tasks/s submitted, assigned (signed), settled (durable ledger), released", Value: rate, Unit: "tasks/s"}.
		target("value", ">=", 5000).
		note("%d tasks in %d concurrent groups, %d fake workers over loopback, %.1f s; %.0f µs CPU per task in this process (verifier + fakes)",
			total, groups, workers, took.Seconds(), us(cpu)/float64(total)).
		note("replicas %s; fake workers rated %s", fmtVerdicts(verdicts), ratedSpeeds(v))
	return rate, row, nil
}

// verdictDelta is the replicas judged between two readings of a
// verifier's Stats().Verdicts, by outcome.
func verdictDelta(before, after map[string]uint64) map[string]uint64 {
	d := map[string]uint64{}
	for k, n := range after {
		if n > before[k] {
			d[k] = n - before[k]
		}
	}
	return d
}

func sumVerdicts(m map[string]uint64) (n uint64) {
	for _, x := range m {
		n += x
	}
	return n
}

// fmtVerdicts lists the outcomes counted, in the market's order.
func fmtVerdicts(m map[string]uint64) string {
	var parts []string
	for _, o := range []market.Outcome{market.OutcomePaid, market.OutcomeTooSlow, market.OutcomeRefused, market.OutcomeWrong,
		market.OutcomeFailed, market.OutcomeTimedOut, market.OutcomeUnjudged} {
		if n := m[string(o)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", o, n))
		}
	}
	if len(parts) == 0 {
		return "none judged"
	}
	return strings.Join(parts, ", ")
}

// ratedSpeeds is the range of the speeds the verifier rated its workers at.
func ratedSpeeds(v *verifier.Verifier) string {
	var lo, hi protocol.Speed
	n := 0
	for _, w := range v.Workers() {
		if !w.Rated {
			continue
		}
		if n == 0 || w.Speed < lo {
			lo = w.Speed
		}
		if n == 0 || w.Speed > hi {
			hi = w.Speed
		}
		n++
	}
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d at speed %s–%s", n, lo, hi)
}

func waitCount(ctx context.Context, n *atomic.Int64, want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for n.Load() < want {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d of %d tasks verified after %v", n.Load(), want, timeout)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}
