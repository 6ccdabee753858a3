package verifier

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
)

// maxReleaseBytes bounds the inline bytes of one Release.
const maxReleaseBytes = 3 << 20

func (v *Verifier) releaseLoop(ctx context.Context) {
	tick := time.NewTicker(v.cfg.ReleaseRetryMin)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.kickRelease:
		case <-tick.C:
		}
		v.releaseRound(ctx)
	}
}

// releaseRound sends every group's settled, posted and unreleased tasks
// to its consumer, batched per group (one send in flight per group; what
// settles meanwhile goes in the next batch). Unacknowledged releases are
// retried with backoff; acknowledged tasks leave memory, and a group with
// no task left is closed. A group whose consumer has not acknowledged for
// ReleaseGiveUp is given up on (undelivered.go).
func (v *Verifier) releaseRound(ctx context.Context) {
	now := v.nowMs()
	v.mu.Lock()
	defer v.mu.Unlock()
	var closed []write
	for _, g := range v.groups {
		if g.releasing || now < g.retryAt {
			continue
		}
		if len(g.tasks) == 0 {
			g.rec.Closed = true
			closed = append(closed, v.groupWrite(g))
			delete(v.groups, g.id)
			continue
		}
		if ws := v.giveUpLocked(g, now); ws != nil {
			closed = append(closed, ws...)
			continue
		}
		var ready []*taskState
		for _, t := range g.tasks {
			if t.rec.Settlement != nil && t.rec.Posted && !t.rec.Released {
				ready = append(ready, t)
			}
		}
		if len(ready) == 0 {
			continue
		}
		slices.SortFunc(ready, func(a, b *taskState) int { return int(a.rec.Index) - int(b.rec.Index) })
		var msgs []*protocol.Release
		var parts [][]*taskState
		var cur *protocol.Release
		size := 0
		for _, t := range ready {
			r := v.releasedLocked(t)
			cost := 256 + len(r.Inline) + 40*len(r.Holders) + len(r.Reason)
			if cur == nil || len(cur.Tasks) >= protocol.MaxTasksPerMessage || size+cost > maxReleaseBytes {
				g.rec.ReleaseSeq++
				cur = &protocol.Release{Group: g.id, Seq: g.rec.ReleaseSeq}
				msgs = append(msgs, cur)
				parts = append(parts, nil)
				size = 0
			}
			cur.Tasks = append(cur.Tasks, r)
			parts[len(parts)-1] = append(parts[len(parts)-1], t)
			size += cost
		}
		g.releasing = true
		v.per.queue(v.groupWrite(g))
		consumer, addrs := g.consumer, g.rec.Addrs
		g := g
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			v.sendReleases(ctx, g, consumer, addrs, msgs, parts)
		}()
	}
	if len(closed) > 0 {
		v.per.queue(closed...)
	}
}

// releasedLocked is the verdict on one settled task as the consumer sees
// it.
func (v *Verifier) releasedLocked(t *taskState) protocol.Released {
	s := t.rec.Settlement
	d := s.Decision
	r := protocol.Released{Index: t.rec.Index, Outcome: t.rec.Outcome, Charged: s.Charged}
	if t.rec.Outcome != protocol.OutcomeVerified {
		r.Reason = truncate(t.rec.Reason, protocol.MaxTextLen)
		if r.Reason == "" {
			r.Reason = truncate(d.Reason, protocol.MaxTextLen)
		}
		return r
	}
	r.Result = mustCID(d.Result)
	r.ExitCode = uint32(d.ExitCode)
	found := false
	for i, run := range t.rec.M.Runs {
		if run.State != market.ReplicaReported || run.Receipt == nil || run.Receipt.ResultCID != d.Result || run.Receipt.ExitCode != d.ExitCode {
			continue
		}
		info := t.rec.Replicas[i]
		if !found {
			r.Status, r.ResultSize, r.Inline = info.Status, info.Size, info.Inline
			found = true
		}
		if id := peerID(run.Worker); id != "" && len(r.Holders) < protocol.MaxReplicas*2 {
			r.Holders = append(r.Holders, id)
		}
		r.Replicas++
	}
	if o := t.rec.Own; o != nil && o.Result == d.Result {
		if !found {
			r.Status, r.ResultSize, r.Inline = o.Status, o.Size, o.Inline
		}
		r.Holders = append([]peer.ID{v.id}, r.Holders...)
		if len(r.Holders) > protocol.MaxReplicas*2 {
			r.Holders = r.Holders[:protocol.MaxReplicas*2]
		}
		r.Replicas++
	}
	if len(r.Inline) > 0 && (uint64(len(r.Inline)) != r.ResultSize || protocol.VerifyBlob(r.Result, r.Inline) != nil) {
		r.Inline = nil
	}
	return r
}

// sendReleases delivers one group's releases in order and records which
// tasks the consumer acknowledged.
func (v *Verifier) sendReleases(ctx context.Context, g *groupState, consumer peer.ID, addrs []string, msgs []*protocol.Release, parts [][]*taskState) {
	v.addAddrs(consumer, addrs)
	var failed error
	for i, msg := range msgs {
		rctx, cancel := context.WithTimeout(ctx, v.cfg.RequestTimeout)
		var ack protocol.Ack
		err := v.host.Request(rctx, consumer, protocol.ProtoRelease, msg, &ack)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var re *p2p.RemoteError
		undeliverable := false
		switch {
		case err == nil && ack.OK:
		case errors.As(err, &re) && (re.Code == protocol.AckUnknown || re.Code == protocol.AckUnauthorized || re.Code == protocol.AckBadRequest):
			v.log.Error("consumer refused a release; giving up on it", "group", g.rec.ID, "consumer", consumer.String(),
				"code", re.Code, "reason", re.Message, "tasks", len(msg.Tasks))
			undeliverable = true
		case err == nil && (ack.Code == protocol.AckUnknown || ack.Code == protocol.AckUnauthorized || ack.Code == protocol.AckBadRequest):
			v.log.Error("consumer refused a release; giving up on it", "group", g.rec.ID, "consumer", consumer.String(),
				"code", ack.Code, "reason", ack.Error, "tasks", len(msg.Tasks))
			undeliverable = true
		case err == nil:
			failed = errors.New(ack.Error)
		default:
			failed = err
		}
		if failed != nil {
			break
		}
		v.mu.Lock()
		var writes []write
		verified := 0
		for _, t := range parts[i] {
			t.rec.Released = true
			// A marker of its own: the task's (final) record is not
			// rewritten for one flag.
			writes = append(writes, write{ns: nsRel, key: t.key(), val: []byte{}})
			writes = append(writes, v.overWrites(t)...)
			if g.tasks[t.rec.Index] == t {
				delete(g.tasks, t.rec.Index)
				v.openTasks--
			}
			if t.rec.Outcome == protocol.OutcomeVerified {
				verified++
			}
		}
		v.per.queue(writes...)
		v.mu.Unlock()
		v.stats.releases.Add(1)
		if !undeliverable {
			v.log.Info("released", "group", g.rec.ID, "consumer", consumer.String(), "seq", msg.Seq,
				"tasks", len(msg.Tasks), "verified", verified)
		}
	}
	v.mu.Lock()
	g.releasing = false
	if failed != nil {
		v.stats.releaseRetries.Add(1)
		if g.backoff == 0 {
			g.backoff = v.cfg.ReleaseRetryMin
		} else {
			g.backoff = min(2*g.backoff, v.cfg.ReleaseRetryMax)
		}
		g.retryAt = v.nowMs() + g.backoff.Milliseconds()
		v.log.Warn("release not acknowledged; will retry", "group", g.rec.ID, "consumer", consumer.String(),
			"retry_in", g.backoff, "err", failed)
	} else {
		g.backoff, g.retryAt = 0, 0
	}
	v.mu.Unlock()
	if failed == nil {
		kick(v.kickRelease)
	}
}
