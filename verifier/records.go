package verifier

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// Store namespaces of the verifier's records (the ledger keeps its own).
// Records are JSON, except task and assignment records, which are written
// in the compact binary form of recordcodec.go (and read in either form).
const (
	nsWorker = "v.worker" // workerRecord by peer ID (its bytes)
	nsGroup  = "v.group"  // groupRecord by group ID
	nsTask   = "v.task"   // taskRecord by group ID + u32 index; binary record
	nsAssign = "v.assign" // assignmentRecord by assignment ID; binary record
	nsAck    = "v.asgack" // empty value: the worker acknowledged the open assignment of this ID
	nsRel    = "v.rel"    // empty value by task key: the consumer acknowledged the task's release
	nsBench  = "v.bench"  // benchRecord by assignment ID
	nsCarry  = "v.carry"  // u64 big-endian picos by market.CarryKey (consumer, payee)
)

// SpeedSample is one trusted measurement of a worker's speed.
type SpeedSample struct {
	Time   int64          `json:"time"`   // unix ms
	Speed  protocol.Speed `json:"speed"`  // measured
	Source string         `json:"source"` // "benchmark" or "spot-check"
}

// SpotChecks counts the outcomes of trusted verifier runs of a worker's
// replicas.
type SpotChecks struct {
	Passed  int `json:"passed"`
	TooSlow int `json:"too_slow"`
	Wrong   int `json:"wrong"`
}

// workerRecord is everything the verifier knows about a worker.
type workerRecord struct {
	ID         string          `json:"id"`
	Owner      string          `json:"owner,omitempty"`
	MinPrice   protocol.Micros `json:"min_price"`
	Slots      uint32          `json:"slots"`
	Addrs      []string        `json:"addrs,omitempty"`
	Registered int64           `json:"registered"`
	Updated    int64           `json:"updated"`

	// Rating: the last issued rating (Sealed is its envelope).
	Speed        protocol.Speed `json:"speed,omitempty"`
	RatingIssued int64          `json:"rating_issued,omitempty"`
	RatingExpiry int64          `json:"rating_expires,omitempty"`
	Sealed       []byte         `json:"sealed,omitempty"`
	// What the sealed rating says besides the speed.
	RatedStrikes     uint32 `json:"rated_strikes,omitempty"`
	RatedReliability uint32 `json:"rated_reliability,omitempty"`

	// Benchmark state.
	Bench         string `json:"bench,omitempty"` // assignment ID of the benchmark in flight
	BenchFailures int    `json:"bench_failures,omitempty"`
	BenchNotUntil int64  `json:"bench_not_until,omitempty"` // retry backoff, unix ms

	History    []SpeedSample     `json:"history,omitempty"`
	Rep        market.Reputation `json:"reputation"`
	SpotChecks SpotChecks        `json:"spot_checks"`
	OfferPrice protocol.Micros   `json:"offer_price,omitempty"` // MinPrice of the last gossip offer
	OfferSeq   uint64            `json:"offer_seq,omitempty"`
}

// groupRecord is a consumer's job group.
type groupRecord struct {
	ID            string          `json:"id"`
	Consumer      string          `json:"consumer"`
	Module        string          `json:"module"`
	ModuleSize    uint64          `json:"module_size"`
	MaxPrice      protocol.Micros `json:"max_price"`
	MinSpeed      protocol.Speed  `json:"min_speed"`
	Replicas      int             `json:"replicas"`
	TimeoutMillis uint64          `json:"timeout_ms"`
	MaxMemory     uint64          `json:"max_memory"`
	Addrs         []string        `json:"addrs,omitempty"`
	Created       int64           `json:"created"`
	Tasks         int             `json:"tasks"` // tasks known
	Canceled      bool            `json:"canceled,omitempty"`
	ReleaseSeq    uint64          `json:"release_seq"` // last Release sequence number used
	Closed        bool            `json:"closed,omitempty"`
}

// replicaInfo is what the verifier keeps of one replica besides the market
// state: the assignment it went out in and the worker's reported result.
type replicaInfo struct {
	Assignment string                `json:"assignment"`
	Acked      bool                  `json:"acked,omitempty"`
	Status     protocol.ResultStatus `json:"status,omitempty"`
	ExitCode   uint32                `json:"exit_code,omitempty"`
	Result     string                `json:"result,omitempty"`
	Size       uint64                `json:"size,omitempty"`
	Inline     []byte                `json:"inline,omitempty"`
	ExecMicros uint64                `json:"exec_micros,omitempty"`
	Work       uint64                `json:"work,omitempty"` // metered, as reported
}

// ownRun is the verifier's own run of a task.
type ownRun struct {
	Status     protocol.ResultStatus `json:"status"`
	ExitCode   uint32                `json:"exit_code"`
	Result     string                `json:"result"`
	Size       uint64                `json:"size"`
	Inline     []byte                `json:"inline,omitempty"`
	ExecMicros int64                 `json:"exec_micros"`
	Reason     string                `json:"reason,omitempty"` // why it could not run
	Work       uint64                `json:"work,omitempty"`   // metered
}

// taskRecord is one task of a group with its market state.
type taskRecord struct {
	Group   string `json:"group"`
	Index   uint32 `json:"index"`
	Input   string `json:"input"`
	Size    uint64 `json:"size"`
	Inline  []byte `json:"inline,omitempty"`
	Created int64  `json:"created"`

	M        *market.Task  `json:"market"`
	Replicas []replicaInfo `json:"replicas,omitempty"` // aligned with M.Runs
	Own      *ownRun       `json:"own,omitempty"`
	// SpotCheck: the secret draw said the verifier runs this task too.
	SpotCheck bool `json:"spot_check,omitempty"`
	// EscrowQueued is how many escrow slots (replica maxima) were queued
	// to the ledger, EscrowPosted how many of them are known posted.
	EscrowQueued int `json:"escrow_queued"`
	EscrowPosted int `json:"escrow_posted"`
	// WaitingSince is when the task last started waiting for workers or
	// funds (0 while it is not waiting); WaitReason says why.
	WaitingSince int64  `json:"waiting_since,omitempty"`
	WaitReason   string `json:"wait_reason,omitempty"`

	// Settlement, once settled; Posted once its ledger posting is durable.
	Settlement *market.Settlement `json:"settlement,omitempty"`
	Posted     bool               `json:"posted,omitempty"`
	Outcome    protocol.Outcome   `json:"outcome,omitempty"`
	Reason     string             `json:"reason,omitempty"`
	Released   bool               `json:"released,omitempty"` // the consumer acknowledged the release
	Finished   int64              `json:"finished,omitempty"`
}

// assignmentRecord is a signed assignment: Sealed is exactly what was (or
// is to be) sent, so it can be re-sent after a restart.
type assignmentRecord struct {
	ID      string    `json:"id"`
	Worker  string    `json:"worker"`
	Group   string    `json:"group"`
	Bench   bool      `json:"bench,omitempty"`
	Tasks   []taskRef `json:"tasks"`
	Issued  int64     `json:"issued"`
	Expires int64     `json:"expires"`
	Sealed  []byte    `json:"sealed"`
	Acked   bool      `json:"acked,omitempty"`
	Done    bool      `json:"done,omitempty"` // refused, or every replica is over
}

type taskRef struct {
	Index   uint32 `json:"index"`
	Replica uint16 `json:"replica"`
}

// benchRecord is one benchmark in flight: the jobs and the verifier's own
// reference results and times.
type benchRecord struct {
	Assignment string      `json:"assignment"`
	Worker     string      `json:"worker"`
	Group      string      `json:"group"`
	Kernel     string      `json:"kernel"`
	Module     string      `json:"module"`
	Tasks      []benchTask `json:"tasks"`
	Issued     int64       `json:"issued"`
}

type benchTask struct {
	Index     uint32 `json:"index"`
	Replica   uint16 `json:"replica"`
	Input     string `json:"input"`
	Result    string `json:"result"`     // reference result CID
	RefMicros int64  `json:"ref_micros"` // the verifier's own run time (shown, not used)
	RefWork   uint64 `json:"ref_work"`   // metered work: the worker must report the same

	Reported     bool   `json:"reported,omitempty"`
	WorkerResult string `json:"worker_result,omitempty"`
	WorkerMicros int64  `json:"worker_micros,omitempty"` // reported time
	WorkerWork   uint64 `json:"worker_work,omitempty"`
	SlotMicros   int64  `json:"slot_micros,omitempty"` // the time observed: reported, bounded by its window share
}

func taskKey(group protocol.ID, index uint32) []byte {
	k := make([]byte, 20)
	copy(k, group[:])
	binary.BigEndian.PutUint32(k[16:], index)
	return k
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("verifier: marshal %T: %v", v, err)) // plain structs
	}
	return b
}

// write is one pending record write (val nil deletes), or ledger postings
// (posts) applied in the same transaction as the records queued with them.
// after, if set, is called with the outcome once the write is durable or
// has failed (without the verifier's lock held, before the waiters hear).
type write struct {
	ns    string
	key   string
	val   []byte
	posts []ledger.Posting
	after func(error)
}

// persister writes records durably in the order they were queued. Callers
// queue snapshots while holding the verifier's lock (so the queue order is
// the order of the changes) and wait outside it. One Durable call is in
// flight at a time; everything queued meanwhile goes into the next one, so
// the store's group commit and fsync are shared.
type persister struct {
	st  *store.Store
	led *ledger.Ledger

	mu      sync.Mutex
	pending []write
	waiters []chan error
	kick    chan struct{}
}

// maxPersistChunk bounds the bytes written in one transaction.
const maxPersistChunk = 4 << 20 // badger refuses a transaction above 15% of the 64 MiB memtable

func newPersister(st *store.Store, led *ledger.Ledger) *persister {
	return &persister{st: st, led: led, kick: make(chan struct{}, 1)}
}

// queue adds writes and returns a channel that receives the outcome once
// they (and everything queued before) are durable.
func (p *persister) queue(ws ...write) <-chan error {
	ch := make(chan error, 1)
	p.mu.Lock()
	p.pending = append(p.pending, ws...)
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return ch
}

// run is the writer loop; it returns when ctx ends, after a last flush.
func (p *persister) run(ctx context.Context) {
	for {
		select {
		case <-p.kick:
			p.flush(ctx)
		case <-ctx.Done():
			p.flush(context.Background())
			return
		}
	}
}

func (p *persister) flush(ctx context.Context) {
	p.mu.Lock()
	ws, waiters := p.pending, p.waiters
	p.pending, p.waiters = nil, nil
	p.mu.Unlock()
	if len(waiters) == 0 {
		return
	}
	// Later writes of a key win: keep only the last of each.
	last := make(map[[2]string]int, len(ws))
	for i, w := range ws {
		if w.posts == nil {
			last[[2]string{w.ns, w.key}] = i
		}
	}
	// Write in chunks that fit one badger transaction, in queue order.
	var err error
	var chunk []write
	size := 0
	commit := func() {
		if err == nil && len(chunk) > 0 {
			c := chunk
			var lastTx *store.Tx
			posts := false
			err = p.st.Durable(ctx, func(tx *store.Tx) error {
				lastTx = tx
				for _, w := range c {
					var err error
					switch {
					case w.posts != nil:
						posts = true
						err = p.led.PostTx(tx, w.posts)
					case w.val == nil:
						err = tx.Delete(w.ns, []byte(w.key))
					default:
						err = tx.Put(w.ns, []byte(w.key), w.val)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err == nil && posts {
				p.led.Committed(lastTx)
			}
		}
		chunk, size = nil, 0
	}
	for i, w := range ws {
		if w.posts == nil && last[[2]string{w.ns, w.key}] != i {
			continue
		}
		if size+len(w.val)+len(w.key) > maxPersistChunk {
			commit()
		}
		chunk = append(chunk, w)
		size += len(w.val) + len(w.key) + 64 + 256*len(w.posts)
	}
	commit()
	if err != nil {
		err = fmt.Errorf("verifier: persist %d records: %w", len(last), err)
	}
	for _, w := range ws {
		if w.after != nil {
			w.after(err)
		}
	}
	for _, ch := range waiters {
		ch <- err
	}
}

// write persists ws durably now (used once the loop has stopped).
func (p *persister) write(ctx context.Context, ws []write) error {
	p.mu.Lock()
	p.pending = append(p.pending, ws...)
	ch := make(chan error, 1)
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()
	p.flush(ctx)
	return <-ch
}
