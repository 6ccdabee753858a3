package verifier

import (
	"context"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
)

// selfLoop runs tasks on the verifier's own sandbox: secret spot checks
// and tie-breaks.
func (v *Verifier) selfLoop(ctx context.Context) {
	for {
		v.mu.Lock()
		var t *taskState
		if len(v.selfQ) > 0 {
			t = v.selfQ[0]
			v.selfQ[0] = nil
			v.selfQ = v.selfQ[1:]
			if len(v.selfQ) > 0 {
				kick(v.kickSelf)
			}
		}
		v.mu.Unlock()
		if t == nil {
			select {
			case <-ctx.Done():
				return
			case <-v.kickSelf:
			}
			continue
		}
		v.selfRun(ctx, t)
		if ctx.Err() != nil {
			return
		}
	}
}

// selfRun fetches the task's module and input from the consumer (into
// the store), runs it, stores the output blob (so the verifier can serve
// it as a holder) and feeds the result to the market as a trusted run.
func (v *Verifier) selfRun(ctx context.Context, t *taskState) {
	v.mu.Lock()
	m := t.rec.M
	if m.Settled || m.Verifier != nil || !m.VerifierPending {
		t.selfQueued = false
		v.mu.Unlock()
		return
	}
	g := t.g
	module, moduleSize, consumer, addrs := g.module, g.rec.ModuleSize, g.consumer, g.rec.Addrs
	input, size, inline := mustCID(t.rec.Input), t.rec.Size, t.rec.Inline
	budget := protocol.WorkBudget(g.rec.TimeoutMillis)
	timeout := protocol.WallClockFactor * time.Duration(g.rec.TimeoutMillis) * time.Millisecond
	maxMem := g.rec.MaxMemory
	v.mu.Unlock()

	run := market.VerifierRun{Speed: v.cfg.VerifierSpeed}
	own := &ownRun{}
	mod, err := v.getBlob(ctx, module, moduleSize, consumer, addrs)
	in := inline
	if err == nil && len(inline) == 0 && size > 0 {
		in, err = v.getBlob(ctx, input, size, consumer, addrs)
	}
	if err != nil {
		if ctx.Err() != nil {
			v.requeueSelf(t)
			return
		}
		own.Reason = fmt.Sprintf("could not fetch the job: %v", err)
		run.Stopped = true
	} else {
		res, err := v.run.Run(ctx, sandbox.Job{ModuleID: module.String(), Module: mod, Input: in, Timeout: timeout, MaxMemory: maxMem,
			WorkBudget: budget})
		if err != nil {
			if ctx.Err() != nil {
				v.requeueSelf(t)
				return
			}
			own.Reason = fmt.Sprintf("sandbox: %v", err)
			run.Stopped = true
		} else {
			out := res.Output()
			enc := protocol.EncodeOutput(&out)
			c, err := v.st.PutBlob(enc)
			if err != nil {
				v.log.Error("storing own result", "err", err)
				c = protocol.BlobCID(enc)
			}
			own.Status, own.ExitCode, own.Result, own.Size = out.Status, out.ExitCode, c.String(), uint64(len(enc))
			own.ExecMicros = max(res.Duration.Microseconds(), 1)
			own.Work = res.Work
			if len(enc) <= protocol.MaxInline {
				own.Inline = enc
			}
			run.ResultCID, run.ExitCode, run.ExecMicros, run.Work = c.String(), int32(out.ExitCode), own.ExecMicros, res.Work
			run.Stopped = out.Status == protocol.StatusTimeout
		}
	}
	now := v.nowMs()
	v.mu.Lock()
	t.selfQueued = false
	if m.Settled || m.Verifier != nil {
		v.mu.Unlock()
		return
	}
	t.rec.Own = own
	v.stats.ownRuns.Add(1)
	if err := m.VerifierResult(run); err != nil {
		v.log.Error("verifier result refused", "group", t.rec.Group, "task", t.rec.Index, "err", err)
	}
	v.log.Info("verifier ran task", "group", t.rec.Group, "task", t.rec.Index, "result", own.Result,
		"status", own.Status.String(), "exec_us", own.ExecMicros, "reason", own.Reason)
	var settled []*taskState
	if v.advanceLocked(t, now) {
		settled = append(settled, t)
	}
	ch := v.per.queue(v.taskWrites(t)...)
	v.mu.Unlock()
	_ = v.persistThenSettle(ctx, ch, settled)
}

func (v *Verifier) requeueSelf(t *taskState) {
	v.mu.Lock()
	t.selfQueued = false
	v.mu.Unlock()
}

// getBlob returns a blob from the store, fetching it from a peer first
// when missing.
func (v *Verifier) getBlob(ctx context.Context, c cid.Cid, size uint64, from peer.ID, addrs []string) ([]byte, error) {
	if _, ok, _ := v.st.HasBlob(c); !ok {
		v.addAddrs(from, addrs)
		if _, err := v.host.FetchBlob(ctx, c, []peer.ID{from}, v.st, int64(size)); err != nil {
			return nil, err
		}
	}
	return v.st.GetBlob(c)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
