package node

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

// GroupSpec is what a consumer submits: a module, its inputs (in order)
// and the terms.
type GroupSpec struct {
	Name      string
	Module    []byte
	Inputs    [][]byte
	MaxPrice  protocol.Micros // per hour
	MinSpeed  protocol.Speed
	Replicas  int
	Timeout   time.Duration
	MaxMemory uint64
}

// GroupStatus is a job group's progress.
type GroupStatus struct {
	GroupRecord
	Pending  int             `json:"pending"`
	Fetching int             `json:"fetching"`
	Verified int             `json:"verified"`
	Failed   int             `json:"failed"`
	Canceled int             `json:"canceled"`
	Spent    protocol.Micros `json:"spent"`
	Done     bool            `json:"done"`
	State    string          `json:"state"`
}

type consumer struct {
	n      *Node
	mu     sync.Mutex
	groups map[protocol.ID]*groupState
	fetchq chan fetchReq
	// waiting counts results requests waiting for a task to finish.
	waiting atomic.Int64
}

type groupState struct {
	rec    GroupRecord
	counts map[string]int
	spent  protocol.Micros
	// fin numbers the group's finished tasks (the results cursor); under
	// consumer.mu.
	fin finishSeq
	// finMark: finish numbers up to finMark are reserved durably
	// (nsFinMark). A release shows its tasks once committed, before its
	// fsync; its finish numbers may become readable then only if they are
	// ≤ finMark, because after a power loss the group's numbering resumes
	// above finMark, so a number a client has read is never handed to
	// another task. Under relMu.
	finMark uint32
	// relMu serialises releases (and a refusal) of the group: each reads
	// task records and writes them back, so a duplicate release handled
	// concurrently must not finish a task twice.
	relMu sync.Mutex
}

func newGroupState(rec GroupRecord) *groupState {
	return &groupState{rec: rec, counts: map[string]int{}, fin: newFinishSeq(0)}
}

type fetchReq struct {
	group protocol.ID
	task  TaskRecord
}

func newConsumer(n *Node) *consumer {
	return &consumer{n: n, groups: map[protocol.ID]*groupState{}, fetchq: make(chan fetchReq, 1<<16)}
}

func (c *consumer) start() error {
	n := c.n
	resubmit, refetch, pending, err := c.load()
	if err != nil {
		return err
	}
	n.host.Handle(protocol.ProtoRelease, c.handleRelease)
	for i := 0; i < 4; i++ {
		n.go_(c.fetchLoop)
	}
	for _, r := range refetch {
		c.fetchq <- r
	}
	for _, id := range resubmit {
		id := id
		n.go_(func() {
			if err := c.submitRemaining(n.ctx, id); err != nil && !errors.Is(err, ErrRefused) && n.ctx.Err() == nil {
				n.log.Warn("resuming submission failed; retrying", "group", id.String(), "err", err)
				c.retrySubmit(id)
			}
		})
	}
	for _, id := range pending {
		n.go_(func() { c.askForResults(id) })
	}
	return nil
}

// load reads the groups and their task counts and numbers finished tasks
// that have no finish number yet. It returns the groups whose submission
// is to be resumed, the result fetches to re-queue and the groups
// submitted in full with tasks still pending.
func (c *consumer) load() (resubmit []protocol.ID, refetch []fetchReq, pending []protocol.ID, err error) {
	n := c.n
	err = n.store.Scan(nsGroup, nil, func(key, val []byte) error {
		var g GroupRecord
		if err := json.Unmarshal(val, &g); err != nil {
			return fmt.Errorf("group record: %w", err)
		}
		id, err := protocol.ParseID(g.ID)
		if err != nil {
			return err
		}
		gs := newGroupState(g)
		c.groups[id] = gs
		if g.Submitted < g.Tasks && !g.Canceled && g.Error == "" {
			resubmit = append(resubmit, id)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	for id, gs := range c.groups {
		var last uint32
		var unnumbered []TaskRecord
		err := n.store.Scan(nsTask, id[:], func(_, val []byte) error {
			var t TaskRecord
			if err := json.Unmarshal(val, &t); err != nil {
				return err
			}
			gs.counts[t.State]++
			gs.spent += t.Charged
			if t.State == TaskFetching {
				refetch = append(refetch, fetchReq{group: id, task: t})
			}
			last = max(last, t.Seq)
			if finalState(t.State) && t.Seq == 0 {
				unnumbered = append(unnumbered, t)
			}
			return nil
		})
		if err != nil {
			return nil, nil, nil, err
		}
		// Tasks finished before finish numbers existed are numbered now, in
		// input order, after the numbered ones.
		if last, err = c.numberFinished(id, last, unnumbered); err != nil {
			return nil, nil, nil, err
		}
		// Numbering resumes above what was reserved: numbers up to the
		// mark may have been read before a power loss took their records.
		if b, err := n.store.Get(nsFinMark, id[:]); err == nil && len(b) == 4 {
			gs.finMark = binary.BigEndian.Uint32(b)
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, nil, nil, fmt.Errorf("node: finish mark of group %s: %w", id, err)
		}
		last = max(last, gs.finMark)
		gs.fin = newFinishSeq(last)
		if gs.counts[TaskPending] > 0 && gs.rec.Submitted >= gs.rec.Tasks && gs.rec.Error == "" {
			pending = append(pending, id)
		}
	}
	return resubmit, refetch, pending, nil
}

// SubmitGroup stores the module and inputs, checks the module compiles,
// records the group durably and submits it to the verifier. It returns
// once the verifier has accepted (or refused) the group.
func (n *Node) SubmitGroup(ctx context.Context, spec GroupSpec) (protocol.ID, error) {
	if n.c == nil {
		return protocol.ID{}, ErrNotConsumer
	}
	return n.c.submit(ctx, spec)
}

func (c *consumer) submit(ctx context.Context, spec GroupSpec) (protocol.ID, error) {
	n := c.n
	switch {
	case len(spec.Module) == 0:
		return protocol.ID{}, fmt.Errorf("%w: no module", ErrBadRequest)
	case len(spec.Inputs) == 0:
		return protocol.ID{}, fmt.Errorf("%w: no inputs", ErrBadRequest)
	case spec.Replicas < 2 || spec.Replicas > protocol.MaxReplicas:
		return protocol.ID{}, fmt.Errorf("%w: replicas must be 2..%d (every job runs on at least two workers)", ErrBadRequest, protocol.MaxReplicas)
	case spec.MaxPrice <= 0:
		return protocol.ID{}, fmt.Errorf("%w: max price per hour must be positive", ErrBadRequest)
	case spec.Timeout <= 0 || spec.Timeout > protocol.MaxJobTimeout:
		return protocol.ID{}, fmt.Errorf("%w: timeout must be in (0, %s]", ErrBadRequest, protocol.MaxJobTimeout)
	}
	if spec.MaxMemory == 0 {
		spec.MaxMemory = n.cfg.Sandbox.MaxMemory
	}
	n.awaitReachable(ctx)
	if why, bad := n.Unreachable(); bad {
		n.log.Warn("submitting a group workers may not be able to fetch from", "why", why)
	}
	// A small module is stored with the group's record below (one fsync
	// for both); a larger one as a blob file of its own first.
	smallModule := len(spec.Module) <= n.store.InlineMax()
	var modCID cid.Cid
	var err error
	if smallModule {
		modCID = protocol.BlobCID(spec.Module)
	} else if modCID, err = n.store.PutBlob(spec.Module); err != nil { // hashes it once
		return protocol.ID{}, fmt.Errorf("node: store module: %w", err)
	}
	if err := n.sb.Compile(ctx, modCID.String(), spec.Module); err != nil {
		return protocol.ID{}, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	id := protocol.NewID()
	now := n.now().UnixMilli()
	g := GroupRecord{ID: id.String(), Name: spec.Name, Module: modCID.String(), ModuleSize: uint64(len(spec.Module)),
		Tasks: len(spec.Inputs), MaxPrice: spec.MaxPrice, MinSpeed: spec.MinSpeed, Replicas: spec.Replicas,
		TimeoutMS: uint64(spec.Timeout.Milliseconds()), MaxMemory: spec.MaxMemory, Created: now}
	tasks := make([]TaskRecord, len(spec.Inputs))
	// An input of at most InlineMax bytes is stored as a blob in the same
	// transaction as its task record (one fsync per chunk of tasks, not
	// one per input); a larger one as a blob file of its own first.
	inTx := func(i int) int {
		if l := len(spec.Inputs[i]); l > protocol.MaxInline && l <= n.store.InlineMax() {
			return l
		}
		return 0
	}
	inCIDs := make([]cid.Cid, len(spec.Inputs))
	for i, in := range spec.Inputs {
		var ic cid.Cid
		if len(in) > protocol.MaxInline && inTx(i) == 0 {
			if ic, err = n.store.PutBlob(in); err != nil { // hashes it once
				return protocol.ID{}, fmt.Errorf("node: store input %d: %w", i, err)
			}
		} else {
			ic = protocol.BlobCID(in)
		}
		inCIDs[i] = ic
		tasks[i] = TaskRecord{Index: uint32(i), Input: ic.String(), Size: uint64(len(in)), State: TaskPending, Updated: now}
		// Small inputs travel inline in messages; they are kept in the task
		// record itself (written in the same group-committed transaction),
		// not as blobs, so a thousand tiny inputs cost no thousand fsyncs.
		if len(in) <= protocol.MaxInline && len(in) > 0 {
			tasks[i].Data = in
		}
	}
	const chunkTasks, chunkBytes = 1000, 4 << 20
	for start, end := 0, 0; start < len(tasks); start = end {
		for size := 0; end < len(tasks) && end-start < chunkTasks && (end == start || size+inTx(end) <= chunkBytes); end++ {
			size += inTx(end)
		}
		err := n.store.Durable(ctx, func(tx *store.Tx) error {
			if start == 0 {
				if smallModule {
					if err := tx.PutBlob(modCID, spec.Module); err != nil {
						return err
					}
				}
				if err := tx.Put(nsGroup, id[:], mustJSON(g)); err != nil {
					return err
				}
				if err := tx.Put(nsFinMark, id[:], binary.BigEndian.AppendUint32(nil, initialFinMark(len(tasks)))); err != nil {
					return err
				}
			}
			for i, t := range tasks[start:end] {
				if inTx(start+i) > 0 {
					if err := tx.PutBlob(inCIDs[start+i], spec.Inputs[start+i]); err != nil {
						return err
					}
				}
				if err := tx.Put(nsTask, taskKey(id, t.Index), mustJSON(t)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return protocol.ID{}, fmt.Errorf("node: persist group: %w", err)
		}
	}
	gs := newGroupState(g)
	gs.counts[TaskPending] = len(tasks)
	gs.finMark = initialFinMark(len(tasks))
	c.mu.Lock()
	c.groups[id] = gs
	c.mu.Unlock()
	n.log.Info("job group created", "group", id.String(), "tasks", len(tasks), "module", modCID.String())
	if err := c.submitRemaining(ctx, id); err != nil {
		if errors.Is(err, ErrRefused) {
			return id, err
		}
		// The group is recorded; the verifier could not take it now
		// (unreachable, busy). Keep submitting in the background.
		n.log.Warn("submission incomplete; retrying in the background", "group", id.String(), "err", err)
		n.go_(func() { c.retrySubmit(id) })
		return id, nil
	}
	// The bid (market visibility only) goes out once the verifier holds the
	// group: published earlier, it would reveal the group ID to anyone who
	// could then submit a group of that ID first and have ours refused.
	c.publishBid(id, g)
	return id, nil
}

// retrySubmit keeps submitting a group's remaining tasks with backoff until
// the verifier takes them, refuses them, or the node stops.
func (c *consumer) retrySubmit(id protocol.ID) {
	n := c.n
	backoff := 500 * time.Millisecond
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		err := c.submitRemaining(n.ctx, id)
		if err == nil || errors.Is(err, ErrRefused) || n.ctx.Err() != nil {
			return
		}
		if backoff < 30*time.Second {
			backoff *= 2
		}
	}
}

func (c *consumer) publishBid(id protocol.ID, g GroupRecord) {
	n := c.n
	mod, _ := cid.Decode(g.Module)
	seq, err := n.seq.next(n.ctx)
	if err != nil {
		n.log.Warn("bid not published", "group", id.String(), "err", err)
		return
	}
	b := &protocol.Bid{Consumer: n.id, Group: id, Seq: seq, Module: mod, Tasks: uint32(g.Tasks),
		MaxPrice: g.MaxPrice, MinSpeed: g.MinSpeed, Replicas: uint8(g.Replicas), Expires: n.now().Add(5 * time.Minute).UnixMilli()}
	if err := n.host.PublishBid(n.ctx, b); err != nil {
		n.log.Debug("bid not published", "err", err)
	}
}

// submitRemaining sends the group's not-yet-acknowledged tasks to the
// verifier in batches bounded by count and bytes.
func (c *consumer) submitRemaining(ctx context.Context, id protocol.ID) error {
	n := c.n
	c.mu.Lock()
	gs := c.groups[id]
	if gs == nil {
		c.mu.Unlock()
		return ErrUnknownGroup
	}
	g := gs.rec
	c.mu.Unlock()
	mod, err := cid.Decode(g.Module)
	if err != nil {
		return err
	}
	var all []TaskRecord
	if err := n.store.Scan(nsTask, id[:], func(_, val []byte) error {
		var t TaskRecord
		if err := json.Unmarshal(val, &t); err != nil {
			return err
		}
		all = append(all, t)
		return nil
	}); err != nil {
		return err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Index < all[j].Index })
	for start := g.Submitted; start < len(all); {
		sub := c.newSubmit(id, g, mod)
		bytes := 0
		end := start
		for end < len(all) && len(sub.Tasks) < protocol.MaxTasksPerMessage && bytes < 2<<20 {
			ti, err := c.taskInput(all[end])
			if err != nil {
				return err
			}
			bytes += 64 + len(ti.Inline)
			sub.Tasks = append(sub.Tasks, ti)
			end++
		}
		var ack protocol.Ack
		if err := n.requestVerifier(ctx, protocol.ProtoSubmit, sub, &ack); err != nil && !refusal(err) {
			return fmt.Errorf("node: submit to verifier: %w", err)
		}
		if !ack.OK && (ack.Code == protocol.AckBusy || ack.Code == protocol.AckInternal) {
			return fmt.Errorf("node: submit to verifier: %s (will retry)", ack.Error)
		}
		if !ack.OK {
			reason := fmt.Sprintf("refused by verifier: %s", ack.Error)
			if ack.Code == protocol.AckInsufficientFunds {
				reason = "insufficient funds: " + ack.Error
			} else if ack.Code == protocol.AckNoWorkers {
				reason = "no eligible workers: " + ack.Error
			}
			c.failGroup(ctx, id, reason)
			return fmt.Errorf("%w: %s", ErrRefused, reason)
		}
		n.metrics.submitted.Add(float64(end - start))
		start = end
		c.mu.Lock()
		gs.rec.Submitted = start
		g = gs.rec
		c.mu.Unlock()
		if err := n.store.Put(nsGroup, id[:], mustJSON(g)); err != nil {
			return err
		}
	}
	return nil
}

// newSubmit is a Submit of group id without tasks.
func (c *consumer) newSubmit(id protocol.ID, g GroupRecord, mod cid.Cid) *protocol.Submit {
	n := c.n
	return &protocol.Submit{Consumer: n.id, Group: id, Module: mod, ModuleSize: g.ModuleSize, MaxPrice: g.MaxPrice,
		MinSpeed: g.MinSpeed, Replicas: uint8(g.Replicas), TimeoutMillis: g.TimeoutMS, MaxMemory: g.MaxMemory,
		Addrs: n.localAddrs(), Time: n.now().UnixMilli()}
}

// taskInput is a task as submitted: small inputs inline.
func (c *consumer) taskInput(t TaskRecord) (protocol.TaskInput, error) {
	ic, err := cid.Decode(t.Input)
	if err != nil {
		return protocol.TaskInput{}, err
	}
	ti := protocol.TaskInput{Index: t.Index, Input: ic, Size: t.Size}
	if t.Size <= protocol.MaxInline && t.Size > 0 {
		ti.Inline = t.Data
		if len(ti.Inline) == 0 {
			b, err := c.n.store.GetBlob(ic)
			if err != nil {
				return ti, fmt.Errorf("input %d: %w", t.Index, err)
			}
			ti.Inline = b
		}
	}
	return ti, nil
}

// askForResults sends the verifier the first pending task of a group
// submitted in full again (submits are idempotent on the task): a
// verifier that gave up on delivering the group's results, its consumer
// having been unreachable for days, releases them again, and one that is
// retrying a release retries at once. The node does it when it starts, for
// every such group with tasks pending, until the verifier answers
// (whatever it answers: a canceled group is refused, yet released again).
func (c *consumer) askForResults(id protocol.ID) {
	n := c.n
	backoff := 500 * time.Millisecond
	for {
		err := c.resubmitPending(n.ctx, id)
		if err == nil || n.ctx.Err() != nil {
			return
		}
		n.log.Debug("asking the verifier for a group's results failed; retrying", "group", id.String(), "err", err)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// resubmitPending submits the group's first pending task again. Any answer
// of the verifier, a refusal included, ends it; only a failure to get one
// (or a busy verifier) is an error.
func (c *consumer) resubmitPending(ctx context.Context, id protocol.ID) error {
	n := c.n
	c.mu.Lock()
	g := c.groups[id].rec
	c.mu.Unlock()
	mod, err := cid.Decode(g.Module)
	if err != nil {
		return nil
	}
	var pending *TaskRecord
	err = n.store.Scan(nsTask, id[:], func(_, val []byte) error {
		var t TaskRecord
		if err := json.Unmarshal(val, &t); err != nil {
			return err
		}
		if t.State == TaskPending {
			pending = &t
			return store.ErrStop
		}
		return nil
	})
	if err != nil || pending == nil {
		return err
	}
	ti, err := c.taskInput(*pending)
	if err != nil {
		n.log.Warn("cannot ask for a group's results", "group", id.String(), "err", err)
		return nil
	}
	sub := c.newSubmit(id, g, mod)
	sub.Tasks = []protocol.TaskInput{ti}
	var ack protocol.Ack
	if err := n.requestVerifier(ctx, protocol.ProtoSubmit, sub, &ack); err != nil && !refusal(err) {
		return err
	}
	if !ack.OK && (ack.Code == protocol.AckBusy || ack.Code == protocol.AckInternal) {
		return fmt.Errorf("verifier: %s", ack.Error)
	}
	n.log.Info("asked the verifier for a group's pending results", "group", id.String(), "ok", ack.OK, "answer", ack.Error)
	return nil
}

// refusal reports whether err is the verifier's definitive refusal of a
// request (p2p.Request returns an Ack with OK == false as a
// *p2p.RemoteError and fills in the Ack too). Busy and internal errors are
// not refusals: the request may succeed when retried.
func refusal(err error) bool {
	var re *p2p.RemoteError
	return errors.As(err, &re) && re.Code != protocol.AckBusy && re.Code != protocol.AckInternal
}

// failGroup marks a refused group's pending tasks failed with reason.
func (c *consumer) failGroup(ctx context.Context, id protocol.ID, reason string) {
	n := c.n
	now := n.now().UnixMilli()
	c.mu.Lock()
	gs := c.groups[id]
	gs.rec.Error = reason
	g := gs.rec
	c.mu.Unlock()
	gs.relMu.Lock()
	defer gs.relMu.Unlock()
	var ts []TaskRecord
	_ = n.store.Scan(nsTask, id[:], func(_, val []byte) error {
		var t TaskRecord
		if json.Unmarshal(val, &t) == nil && t.State == TaskPending && int(t.Index) >= g.Submitted {
			ts = append(ts, t)
		}
		return nil
	})
	c.mu.Lock()
	first := gs.fin.reserve(len(ts))
	c.mu.Unlock()
	for i := range ts {
		ts[i].State, ts[i].Reason, ts[i].Updated, ts[i].Seq = TaskFailed, reason, now, first+uint32(i)
	}
	err := n.store.Durable(ctx, func(tx *store.Tx) error {
		if err := tx.Put(nsGroup, id[:], mustJSON(g)); err != nil {
			return err
		}
		return putTasks(tx, id, ts)
	})
	c.mu.Lock()
	if err == nil {
		gs.counts[TaskPending] -= len(ts)
		gs.counts[TaskFailed] += len(ts)
	}
	gs.fin.resolve(first, len(ts))
	c.mu.Unlock()
	if err != nil {
		n.log.Error("recording a refused group", "group", id.String(), "err", err)
	}
	n.log.Warn("job group refused", "group", id.String(), "reason", reason)
}

// putTasks writes task records and, for those with a finish number, their
// nsDone entry.
func putTasks(tx *store.Tx, group protocol.ID, ts []TaskRecord) error {
	for _, t := range ts {
		if err := tx.Put(nsTask, taskKey(group, t.Index), mustJSON(t)); err != nil {
			return err
		}
		if t.Seq != 0 {
			if err := tx.Put(nsDone, doneKey(group, t.Seq), binary.BigEndian.AppendUint32(nil, t.Index)); err != nil {
				return err
			}
		}
	}
	return nil
}

// finalState reports whether a task in this state will not change again.
func finalState(s string) bool { return s == TaskVerified || s == TaskFailed || s == TaskCanceled }

// handleRelease records the verifier's verdicts. Inline results are
// checked against their CID and stored at once; others are fetched from a
// holder in the background. Tasks that become final get the group's next
// finish numbers, and waiting results requests are woken once they are
// durable.
func (c *consumer) handleRelease(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	n := c.n
	if env.Signer != n.cfg.Verifier.ID {
		return refuse(protocol.ID{}, protocol.AckUnauthorized, "releases are accepted only from the pinned verifier"), nil
	}
	var rel protocol.Release
	if err := env.Decode(&rel); err != nil {
		return refuse(protocol.ID{}, protocol.AckBadRequest, "%v", err), nil
	}
	c.mu.Lock()
	gs := c.groups[rel.Group]
	c.mu.Unlock()
	if gs == nil {
		return refuse(rel.Group, protocol.AckUnknown, "unknown group"), nil
	}
	gs.relMu.Lock()
	defer gs.relMu.Unlock()
	now := n.now().UnixMilli()
	var updated []TaskRecord
	var prev []string
	var fetch []fetchReq
	var blobs []inlineBlob
	finals := 0
	for _, r := range rel.Tasks {
		b, err := n.store.Get(nsTask, taskKey(rel.Group, r.Index))
		if err != nil {
			continue // not ours
		}
		var t TaskRecord
		if err := json.Unmarshal(b, &t); err != nil {
			continue
		}
		if t.State != TaskPending {
			continue // already released: idempotent
		}
		t.Updated = now
		t.Charged = r.Charged
		t.Replicas = r.Replicas
		switch r.Outcome {
		case protocol.OutcomeVerified:
			t.Result, t.Status, t.ExitCode = r.Result.String(), r.Status, r.ExitCode
			t.Holders = t.Holders[:0]
			for _, h := range r.Holders {
				t.Holders = append(t.Holders, h.String())
			}
			t.State = TaskFetching
			if len(r.Inline) > 0 {
				switch err := protocol.VerifyBlob(r.Result, r.Inline); {
				case err != nil:
					n.log.Warn("inline result does not match its CID", "group", rel.Group.String(), "task", r.Index, "err", err)
				case len(r.Inline) <= n.store.InlineMax():
					// Stored with the task records below: one commit and
					// one fsync for the whole release.
					blobs = append(blobs, inlineBlob{r.Result, r.Inline})
					t.State = TaskVerified
				default:
					if err := n.store.PutBlobVerified(r.Result, r.Inline); err != nil {
						n.log.Warn("storing inline result", "group", rel.Group.String(), "task", r.Index, "err", err)
					} else {
						t.State = TaskVerified
					}
				}
			}
		case protocol.OutcomeFailed:
			t.State, t.Reason = TaskFailed, r.Reason
		case protocol.OutcomeCanceled:
			t.State, t.Reason = TaskCanceled, "canceled"
		}
		if finalState(t.State) {
			finals++
		}
		updated = append(updated, t)
		prev = append(prev, TaskPending)
		n.metrics.releases.WithLabelValues(r.Outcome.String()).Inc()
	}
	if len(updated) == 0 {
		// A redelivery of tasks already recorded (by a release whose ack
		// was lost or refused, or before a crash): acknowledged only once
		// that record is durable.
		if err := n.store.SyncCommitted(ctx); err != nil {
			return refuse(rel.Group, protocol.AckInternal, "sync: %v", err), nil
		}
		return &protocol.Ack{Ref: rel.Group, OK: true}, nil
	}
	c.mu.Lock()
	first := gs.fin.reserve(finals)
	c.mu.Unlock()
	// Numbers above the durable mark are readable only once this release
	// is durable; the mark is raised in the same transaction.
	var newMark uint32
	if finals > 0 && first+uint32(finals)-1 > gs.finMark {
		newMark = first + uint32(finals) - 1 + finMarkStep
	}
	seq := first
	for i := range updated {
		if finalState(updated[i].State) {
			updated[i].Seq = seq
			seq++
		}
	}
	// Visible on commit, acknowledged once durable. The release's records
	// (with their inline results) are committed in one transaction; from
	// then on they survive a kill -9 and the tasks show as final. The ack
	// waits for the group commit's next fsync, so after a power loss that
	// took the commit the verifier still delivers them again. Their finish
	// numbers (the results cursor) are readable at once too when they are
	// within the group's durable mark, else only with the fsync that
	// raises it: a number a client has read must never be handed to
	// another task by a restart after a power loss.
	err := n.store.Update(func(tx *store.Tx) error {
		for _, b := range blobs {
			if err := tx.PutBlob(b.cid, b.data); err != nil {
				return err
			}
		}
		if newMark != 0 {
			if err := tx.Put(nsFinMark, rel.Group[:], binary.BigEndian.AppendUint32(nil, newMark)); err != nil {
				return err
			}
		}
		return putTasks(tx, rel.Group, updated)
	})
	if err == nil {
		c.mu.Lock()
		for i, t := range updated {
			gs.counts[prev[i]]--
			gs.counts[t.State]++
			gs.spent += t.Charged
		}
		resolved := newMark == 0
		if resolved {
			gs.fin.resolve(first, finals)
		}
		c.mu.Unlock()
		if serr := n.store.SyncCommitted(ctx); serr != nil {
			err = fmt.Errorf("sync: %w", serr)
		} else if newMark != 0 {
			gs.finMark = newMark
		}
		if !resolved {
			c.mu.Lock()
			gs.fin.resolve(first, finals)
			c.mu.Unlock()
		}
	} else {
		c.mu.Lock()
		gs.fin.resolve(first, finals) // abandoned
		c.mu.Unlock()
	}
	if err != nil {
		return refuse(rel.Group, protocol.AckInternal, "persist: %v", err), nil
	}
	for _, t := range updated {
		if t.State == TaskFetching {
			fetch = append(fetch, fetchReq{group: rel.Group, task: t})
		}
	}
	for _, f := range fetch {
		select {
		case c.fetchq <- f:
		default:
			go func(f fetchReq) { c.fetchq <- f }(f)
		}
	}
	return &protocol.Ack{Ref: rel.Group, OK: true, Count: uint32(len(updated))}, nil
}

// finMarkStep is how many finish numbers a release reserves ahead when it
// raises a group's durable mark; a new group reserves one per task.
const finMarkStep = 4096

// initialFinMark is the durable mark a group of n tasks starts with: every
// task becomes final once, so its releases need no raise unless a failed
// commit wasted numbers or the node restarted.
func initialFinMark(n int) uint32 { return uint32(min(n, 1<<31)) }

// inlineBlob is a small result that arrived inside a release.
type inlineBlob struct {
	cid  cid.Cid
	data []byte
}

func (c *consumer) fetchLoop() {
	n := c.n
	for {
		var f fetchReq
		select {
		case <-n.ctx.Done():
			return
		case f = <-c.fetchq:
		}
		rc, err := cid.Decode(f.task.Result)
		if err != nil {
			continue
		}
		var holders []peer.ID
		for _, h := range f.task.Holders {
			if p, err := peer.Decode(h); err == nil {
				holders = append(holders, p)
				n.host.AddRelayedAddrs(p, 10*time.Minute) // a worker behind NAT
			}
		}
		backoff := 500 * time.Millisecond
		for {
			if _, ok, _ := n.store.HasBlob(rc); ok {
				break
			}
			ctx, cancel := context.WithTimeout(n.ctx, 5*time.Minute)
			var got int64
			// Group and task tell a holder (the verifier, for its own run)
			// where to look up that the result is ours.
			got, err = n.host.FetchBlobFor(ctx, rc, holders, n.store, protocol.MaxBlobSize,
				p2p.BlobReason{Group: f.group, Task: f.task.Index})
			cancel()
			if err == nil {
				n.metrics.fetchBytes.WithLabelValues("result").Add(float64(got))
				break
			}
			n.metrics.fetchErrors.Inc()
			if n.ctx.Err() != nil {
				return
			}
			n.log.Warn("fetching result failed; retrying", "group", f.group.String(), "task", f.task.Index, "err", err)
			select {
			case <-time.After(backoff):
			case <-n.ctx.Done():
				return
			}
			if backoff < 30*time.Second {
				backoff *= 2
			}
		}
		c.mu.Lock()
		gs := c.groups[f.group]
		seq := gs.fin.reserve(1)
		c.mu.Unlock()
		t := f.task
		t.State, t.Updated, t.Seq = TaskVerified, n.now().UnixMilli(), seq
		err = n.store.Durable(n.ctx, func(tx *store.Tx) error { return putTasks(tx, f.group, []TaskRecord{t}) })
		c.mu.Lock()
		if err == nil {
			gs.counts[TaskFetching]--
			gs.counts[TaskVerified]++
		}
		gs.fin.resolve(seq, 1)
		c.mu.Unlock()
	}
}

// status is the group's status; the caller holds consumer.mu.
func (gs *groupState) status() GroupStatus {
	s := GroupStatus{GroupRecord: gs.rec, Pending: gs.counts[TaskPending], Fetching: gs.counts[TaskFetching],
		Verified: gs.counts[TaskVerified], Failed: gs.counts[TaskFailed], Canceled: gs.counts[TaskCanceled], Spent: gs.spent}
	// Done once every task is final and every result is readable by the
	// results cursor (finish numbers can trail a commit by an fsync).
	s.Done = s.Pending == 0 && s.Fetching == 0 && !gs.fin.inflight()
	switch {
	case !s.Done && gs.rec.Canceled:
		s.State = "canceling"
	case !s.Done:
		s.State = "running"
	case s.Failed > 0 || s.Canceled > 0:
		s.State = "finished with failures"
	default:
		s.State = "verified"
	}
	return s
}

// Groups lists the consumer's job groups, newest first.
func (n *Node) Groups() ([]GroupStatus, error) {
	if n.c == nil {
		return nil, ErrNotConsumer
	}
	n.c.mu.Lock()
	out := make([]GroupStatus, 0, len(n.c.groups))
	for _, gs := range n.c.groups {
		out = append(out, gs.status())
	}
	n.c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created > out[j].Created })
	return out, nil
}

// Group returns one group's progress.
func (n *Node) Group(id protocol.ID) (GroupStatus, error) {
	if n.c == nil {
		return GroupStatus{}, ErrNotConsumer
	}
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	gs := n.c.groups[id]
	if gs == nil {
		return GroupStatus{}, ErrUnknownGroup
	}
	return gs.status(), nil
}

// Tasks returns a group's tasks in input order.
func (n *Node) Tasks(id protocol.ID) ([]TaskRecord, error) {
	if _, err := n.Group(id); err != nil {
		return nil, err
	}
	var out []TaskRecord
	err := n.store.Scan(nsTask, id[:], func(_, val []byte) error {
		var t TaskRecord
		if err := json.Unmarshal(val, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, err
}

// Result returns the verified output of one task.
func (n *Node) Result(id protocol.ID, index uint32) (*protocol.Output, TaskRecord, error) {
	b, err := n.store.Get(nsTask, taskKey(id, index))
	if errors.Is(err, store.ErrNotFound) {
		return nil, TaskRecord{}, ErrUnknownTask
	} else if err != nil {
		return nil, TaskRecord{}, err
	}
	var t TaskRecord
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, t, err
	}
	if t.State != TaskVerified {
		return nil, t, fmt.Errorf("%w: task %d is %s", ErrNotReady, index, t.State)
	}
	rc, err := cid.Decode(t.Result)
	if err != nil {
		return nil, t, err
	}
	blob, err := n.store.GetBlob(rc)
	if err != nil {
		return nil, t, err
	}
	o, err := protocol.DecodeOutput(blob)
	return o, t, err
}

// Cancel asks the verifier to stop a group's unfinished tasks and refund
// their escrow.
func (n *Node) Cancel(ctx context.Context, id protocol.ID) error {
	if n.c == nil {
		return ErrNotConsumer
	}
	c := n.c
	c.mu.Lock()
	gs := c.groups[id]
	if gs == nil {
		c.mu.Unlock()
		return ErrUnknownGroup
	}
	gs.rec.Canceled = true
	g := gs.rec
	c.mu.Unlock()
	if err := n.store.Put(nsGroup, id[:], mustJSON(g)); err != nil {
		return err
	}
	var ack protocol.Ack
	if err := n.requestVerifier(ctx, protocol.ProtoCancel, &protocol.Cancel{Consumer: n.id, Group: id, Time: n.now().UnixMilli()}, &ack); err != nil && !refusal(err) {
		return fmt.Errorf("node: cancel: %w", err)
	}
	if !ack.OK {
		return fmt.Errorf("%w: %s", ErrRefused, ack.Error)
	}
	n.log.Info("job group canceled", "group", id.String())
	return nil
}

// Statement asks the verifier for this node's signed account statement.
func (n *Node) Statement(ctx context.Context) (*protocol.Statement, error) {
	req := &protocol.StatementRequest{Peer: n.id, Nonce: protocol.NewID(), Time: n.now().UnixMilli()}
	var st protocol.Statement
	if err := n.requestVerifier(ctx, protocol.ProtoStatement, req, &st); err != nil {
		return nil, fmt.Errorf("node: statement: %w", err)
	}
	if st.Nonce != req.Nonce || st.Peer != n.id {
		return nil, fmt.Errorf("%w: statement does not answer our request", ErrRefused)
	}
	return &st, nil
}
