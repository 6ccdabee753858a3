package market

import (
	"fmt"
	"math/bits"

	"github.com/aspen-market/aspen/protocol"
)

// ReplicaState is where one replica is in its life:
//
//	assigned ──receipt (a possible time, not stopped)──▶ reported
//	    │ ────receipt claiming an impossible time──────▶ refused (struck)
//	    │ ────receipt stopped by the wall-clock net────▶ timed-out
//	    │ ────deadline passed (Sweep)──────────────────▶ timed-out
//	    └─────silent past heartbeat timeout, Fail──────▶ failed
//
// reported, refused, failed and timed-out are terminal.
type ReplicaState string

// Replica states.
const (
	ReplicaAssigned ReplicaState = "assigned"
	ReplicaReported ReplicaState = "reported"
	ReplicaRefused  ReplicaState = "refused"
	ReplicaFailed   ReplicaState = "failed"
	ReplicaTimedOut ReplicaState = "timed-out"
)

// Receipt is what a worker reports for its replica, with the time bound
// the verifier observed itself.
type Receipt struct {
	ResultCID string `json:"result_cid"` // CID of the job's output
	ExitCode  int32  `json:"exit_code"`
	// Work is the run's metered work (standard work units): exact, part of
	// the result, the same on every honest replica.
	Work uint64 `json:"work"`
	// ExecMicros is the run time the worker reports. It decides nothing
	// alone: it must fit in WindowMicros and imply a possible speed.
	ExecMicros int64 `json:"exec_micros"`
	// WindowMicros is the time the verifier observed between issuing the
	// assignment and receiving this receipt: no honest run takes longer.
	// 0 = not observed (records older than metering): no bound.
	WindowMicros int64 `json:"window_micros,omitempty"`
	// SlotMicros is this replica's share of the busy slot time the
	// verifier observed the worker spend on its receipt (the time the
	// replicas spent in the worker's slots, verifier/held.go): the time
	// it is judged and rated on. 0 = not observed.
	SlotMicros int64 `json:"slot_micros,omitempty"`
	// Stopped: the worker stopped the job with the wall-clock safety net;
	// there is no result.
	Stopped bool `json:"stopped,omitempty"`
}

// VerifierRun is the verifier's own trusted run of the task (a spot check
// or a tie-break). Speed is the verifier machine's measured speed.
type VerifierRun struct {
	ResultCID  string         `json:"result_cid"`
	ExitCode   int32          `json:"exit_code"`
	Work       uint64         `json:"work"`
	ExecMicros int64          `json:"exec_micros"`
	Speed      protocol.Speed `json:"speed"`
	Stopped    bool           `json:"stopped,omitempty"` // hit the wall-clock net: no verdict
}

// Replica is one worker's copy of a task.
type Replica struct {
	Worker     string          `json:"worker"`
	Owner      string          `json:"owner,omitempty"`
	Price      protocol.Micros `json:"price"` // per hour, billed (pay-as-ask)
	Speed      protocol.Speed  `json:"speed"` // rated speed at assignment
	State      ReplicaState    `json:"state"`
	AssignedAt int64           `json:"assigned_at"` // unix ms
	LastSeen   int64           `json:"last_seen"`   // unix ms of last heartbeat
	Receipt    *Receipt        `json:"receipt,omitempty"`
	Reason     string          `json:"reason,omitempty"` // why failed, refused or timed out
}

// Terms are the rules a task was created under. They are copied from the
// Config at NewTask so that a persisted task is decided and settled by the
// terms its consumer escrowed for, even if the configuration changes.
type Terms struct {
	MaxRunMicros     int64  `json:"max_run_micros"` // the work budget is MaxWork(MaxRunMicros)
	MaxRuns          int    `json:"max_runs"`       // worker replicas allowed in total
	TolerancePPM     uint32 `json:"tolerance_ppm"`
	SlackMicros      int64  `json:"slack_micros,omitempty"` // Config.SpeedSlack
	OperatorCutPPM   uint32 `json:"operator_cut_ppm"`
	VerifierTiebreak bool   `json:"verifier_tiebreak"`
	// MaxSpeed is the fastest speed a receipt may imply (work ÷ reported
	// time); a faster claim is impossible, refused and struck.
	MaxSpeed protocol.Speed `json:"max_speed,omitempty"`
	// EscrowSpeed is the slowest rated speed the escrow covers: the
	// consumer's MinSpeed, raised to Config.MinRatedSpeed.
	EscrowSpeed protocol.Speed `json:"escrow_speed,omitempty"`
}

// Task is one job of a consumer's group, with its replicas, the verifier's
// run if any, and its escrow. All fields are exported for persistence;
// change them only through the methods.
type Task struct {
	Consumer string          `json:"consumer"`
	Group    string          `json:"group"`
	Index    int             `json:"index"`
	MaxPrice protocol.Micros `json:"max_price"`
	MinSpeed protocol.Speed  `json:"min_speed"`
	Replicas int             `json:"replicas"` // replicas wanted
	Terms    Terms           `json:"terms"`

	Runs            []Replica    `json:"runs"`
	VerifierPending bool         `json:"verifier_pending,omitempty"`
	Verifier        *VerifierRun `json:"verifier,omitempty"`

	// Escrowed is the total escrowed for the task so far; EscrowSlots the
	// number of replica maxima it covers.
	Escrowed    protocol.Micros `json:"escrowed"`
	EscrowSlots int             `json:"escrow_slots"`
	Aborted     string          `json:"aborted,omitempty"`
	Settled     bool            `json:"settled,omitempty"`
}

// SpotCheck draws whether the verifier also runs a new task itself: true
// with probability SpotCheckPPM / 1e6. The draw is a pure function of rnd;
// seed it secretly so no worker can tell which tasks are checked.
func SpotCheck(cfg Config, rnd Rand) bool {
	return cfg.SpotCheckPPM > 0 && rnd.Uint64N(PPM) < uint64(cfg.SpotCheckPPM)
}

// NewTask creates task index of the bid's group under cfg and escrows
// Replicas × ReplicaEscrow(MaxPrice, MaxRunTime, escrow speed): the caller
// debits t.Escrowed from the consumer (and refuses the task if it cannot).
func NewTask(bid Bid, index int, cfg Config) (*Task, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := bid.Validate(cfg); err != nil {
		return nil, err
	}
	t := &Task{
		Consumer: bid.Consumer, Group: bid.Group, Index: index,
		MaxPrice: bid.MaxPrice, MinSpeed: bid.MinSpeed, Replicas: bid.Replicas,
		Terms: Terms{
			MaxRunMicros:     cfg.maxRunMicros(),
			MaxRuns:          bid.Replicas + cfg.MaxExtraReplicas,
			TolerancePPM:     cfg.SpeedTolerancePPM,
			SlackMicros:      cfg.SpeedSlack.Microseconds(),
			OperatorCutPPM:   cfg.OperatorCutPPM,
			VerifierTiebreak: cfg.VerifierTiebreak,
			MaxSpeed:         cfg.MaxSpeed,
			EscrowSpeed:      max(bid.MinSpeed, cfg.MinRatedSpeed),
		},
		EscrowSlots: bid.Replicas,
	}
	t.Escrowed = t.ReplicaEscrow() * protocol.Micros(bid.Replicas)
	return t, nil
}

// ReplicaEscrow is the most one replica of this task can cost.
func (t *Task) ReplicaEscrow() protocol.Micros {
	return ReplicaEscrow(t.MaxPrice, t.Terms.MaxRunMicros, t.escrowSpeed())
}

// escrowSpeed is Terms.EscrowSpeed, or for a task persisted before it
// existed the bid's MinSpeed (at least 1 milli unit).
func (t *Task) escrowSpeed() protocol.Speed {
	if t.Terms.EscrowSpeed != 0 {
		return t.Terms.EscrowSpeed
	}
	return max(t.MinSpeed, 1)
}

// Bid returns the task's terms as a bid, for selecting further replicas.
func (t *Task) Bid() Bid {
	return Bid{Consumer: t.Consumer, Group: t.Group, MaxPrice: t.MaxPrice, MinSpeed: t.MinSpeed, Replicas: t.Replicas}
}

// Exclude is the set of workers that hold or held the task: a new replica
// must go elsewhere.
func (t *Task) Exclude() map[string]bool {
	ex := make(map[string]bool, len(t.Runs))
	for _, r := range t.Runs {
		ex[r.Worker] = true
	}
	return ex
}

func (t *Task) replica(worker string) (*Replica, error) {
	for i := range t.Runs {
		if t.Runs[i].Worker == worker {
			return &t.Runs[i], nil
		}
	}
	return nil, fmt.Errorf("%w: worker %s on task %s/%d", ErrUnknownReplica, worker, t.Group, t.Index)
}

// running looks up the worker's replica and checks that it is assigned
// and that the task still takes events.
func (t *Task) running(worker string) (*Replica, error) {
	if err := t.open(); err != nil {
		return nil, err
	}
	r, err := t.replica(worker)
	if err != nil {
		return nil, err
	}
	if r.State != ReplicaAssigned {
		return nil, fmt.Errorf("%w: worker %s is %s", ErrNotRunning, worker, r.State)
	}
	return r, nil
}

// open refuses events on a settled or decided task.
func (t *Task) open() error {
	if t.Settled {
		return ErrAlreadySettled
	}
	if d := t.Decide(); d.Final() {
		return fmt.Errorf("%w: %s", ErrTaskFinal, d.Kind)
	}
	return nil
}

func (t *Task) live() int {
	n := 0
	for _, r := range t.Runs {
		if r.State == ReplicaAssigned || r.State == ReplicaReported {
			n++
		}
	}
	return n
}

// Assign records a new replica on m.Worker at now (unix ms). It refuses a
// worker that holds or held the task, a match outside the bid's price and
// speed bounds, and a task that used all Terms.MaxRuns replicas. When the
// replicas that may still be paid would outnumber the escrowed slots, one
// more replica maximum is escrowed: the returned topUp (else 0) must be
// debited from the consumer.
func (t *Task) Assign(m Match, now int64) (topUp protocol.Micros, err error) {
	if err := t.open(); err != nil {
		return 0, err
	}
	switch {
	case m.Worker == "":
		return 0, fmt.Errorf("%w: empty worker", ErrConstraint)
	case m.Price < 0 || m.Price > t.MaxPrice:
		return 0, fmt.Errorf("%w: worker %s asks %s/h, max is %s/h", ErrConstraint, m.Worker, m.Price, t.MaxPrice)
	case m.Speed == 0 || m.Speed < t.MinSpeed || m.Speed < t.escrowSpeed():
		return 0, fmt.Errorf("%w: worker %s speed %s, min is %s", ErrConstraint, m.Worker, m.Speed, t.MinSpeed)
	case len(t.Runs) >= t.Terms.MaxRuns:
		return 0, fmt.Errorf("%w: task used all %d replicas", ErrConstraint, t.Terms.MaxRuns)
	}
	if _, err := t.replica(m.Worker); err == nil {
		return 0, fmt.Errorf("%w: %s", ErrDuplicateWorker, m.Worker)
	}
	t.Runs = append(t.Runs, Replica{
		Worker: m.Worker, Owner: m.Owner, Price: m.Price, Speed: m.Speed,
		State: ReplicaAssigned, AssignedAt: now, LastSeen: now,
	})
	if t.live() > t.EscrowSlots {
		topUp = t.ReplicaEscrow()
		t.EscrowSlots++
		t.Escrowed += topUp
	}
	return topUp, nil
}

// Heartbeat records that the worker holding a running replica was heard
// from at now.
func (t *Task) Heartbeat(worker string, now int64) error {
	r, err := t.running(worker)
	if err != nil {
		return err
	}
	r.LastSeen = max(r.LastSeen, now)
	return nil
}

// Receipt records the worker's receipt at now. A receipt for a replica that
// is no longer running (e.g. failed for silence) is refused and its result
// ignored. A receipt marked Stopped (the wall-clock safety net stopped the
// job) times the replica out. A receipt whose claim is impossible — a time
// longer than the window the verifier observed (rc.WindowMicros), work
// beyond the task's budget, or a time so short that work ÷ time exceeds
// Terms.MaxSpeed — refuses the replica: its
// result does not count, it is not paid, and it is struck (the claim is a
// lie no honest worker can tell).
func (t *Task) Receipt(worker string, rc Receipt, now int64) error {
	r, err := t.running(worker)
	if err != nil {
		return err
	}
	if rc.ExecMicros < 0 || rc.WindowMicros < 0 || (rc.ResultCID == "" && !rc.Stopped) {
		return fmt.Errorf("%w: from %s: time %dµs, window %dµs, result %q", ErrBadReceipt, worker,
			rc.ExecMicros, rc.WindowMicros, rc.ResultCID)
	}
	r.Receipt = &rc
	r.LastSeen = max(r.LastSeen, now)
	switch {
	case rc.Stopped:
		r.State, r.Reason = ReplicaTimedOut, "stopped by the wall-clock safety net"
	case rc.WindowMicros > 0 && rc.ExecMicros > rc.WindowMicros:
		r.State, r.Reason = ReplicaRefused, fmt.Sprintf("claimed %dµs, more than the %dµs the verifier observed",
			rc.ExecMicros, rc.WindowMicros)
	case rc.Work > MaxWork(t.Terms.MaxRunMicros):
		r.State, r.Reason = ReplicaRefused, fmt.Sprintf("claimed %d work units, beyond the task's budget of %d",
			rc.Work, MaxWork(t.Terms.MaxRunMicros))
	case t.Terms.MaxSpeed > 0 && impliedFaster(rc.Work, rc.ExecMicros, t.Terms.MaxSpeed):
		r.State, r.Reason = ReplicaRefused, fmt.Sprintf("claimed %d work units in %dµs, faster than any machine (max speed %s)",
			rc.Work, rc.ExecMicros, t.Terms.MaxSpeed)
	default:
		r.State = ReplicaReported
	}
	return nil
}

// impliedFaster reports whether work done in micros means a speed above
// maxSpeed: work > micros × maxSpeed (a speed s does s units per µs).
func impliedFaster(work uint64, micros int64, maxSpeed protocol.Speed) bool {
	hi, lo := bits.Mul64(uint64(max(micros, 0)), uint64(maxSpeed)*protocol.WorkPerMicroPerMilli)
	return hi == 0 && work > lo
}

// Fail drops the worker's running replica (worker gone, cancelled by its
// owner, unreachable): it is not paid and the consumer is not charged.
func (t *Task) Fail(worker, reason string) error {
	r, err := t.running(worker)
	if err != nil {
		return err
	}
	r.State, r.Reason = ReplicaFailed, reason
	return nil
}

// Dropped is a replica that Sweep failed or timed out.
type Dropped struct {
	Worker string       `json:"worker"`
	State  ReplicaState `json:"state"`
	Reason string       `json:"reason"`
}

// Sweep applies the clock at now (unix ms) to the running replicas: one
// whose worker was silent for more than cfg.HeartbeatTimeout is failed; one
// still unreported more than its budget's time at its rated speed
// (MaxRunTime × 1.0 ÷ speed) + cfg.DeadlineSlack after its assignment is
// timed out. It returns what it dropped, in assignment order;
// the caller releases those workers' reservations.
func (t *Task) Sweep(now int64, cfg Config) []Dropped {
	if t.open() != nil {
		return nil
	}
	var out []Dropped
	hb := cfg.HeartbeatTimeout.Milliseconds()
	for i := range t.Runs {
		r := &t.Runs[i]
		if r.State != ReplicaAssigned {
			continue
		}
		deadline := int64(mulDiv(uint64(t.Terms.MaxRunMicros), uint64(protocol.SpeedUnit), uint64(max(r.Speed, 1))*1000)) +
			cfg.DeadlineSlack.Milliseconds()
		switch {
		case now-r.LastSeen > hb:
			r.State, r.Reason = ReplicaFailed, fmt.Sprintf("silent for %dms", now-r.LastSeen)
		case now-r.AssignedAt > deadline:
			r.State, r.Reason = ReplicaTimedOut, fmt.Sprintf("no receipt %dms after assignment", now-r.AssignedAt)
		default:
			continue
		}
		out = append(out, Dropped{r.Worker, r.State, r.Reason})
	}
	return out
}

// RequestVerifier marks that the verifier runs the task itself (a spot
// check at creation, or a tie-break Decide asked for). Decide waits for its
// result. It is idempotent.
func (t *Task) RequestVerifier() error {
	if err := t.open(); err != nil {
		return err
	}
	if t.Verifier != nil {
		return ErrVerifierDone
	}
	t.VerifierPending = true
	return nil
}

// VerifierResult records the verifier's own run. Its result, if not
// stopped, is the verified result and its L the reference.
func (t *Task) VerifierResult(run VerifierRun) error {
	if err := t.open(); err != nil {
		return err
	}
	if t.Verifier != nil {
		return ErrVerifierDone
	}
	if run.Speed == 0 || run.ExecMicros < 0 || (run.ResultCID == "" && !run.Stopped) {
		return fmt.Errorf("%w: verifier run: speed %s, time %dµs, result %q", ErrBadReceipt, run.Speed, run.ExecMicros, run.ResultCID)
	}
	t.Verifier = &run
	t.VerifierPending = false
	return nil
}

// Abort stops the task now (canceled, or no worker could be found in
// time). Work already reported is judged (Decide): a result it verifies is
// paid as agreed; running replicas are left unjudged and unpaid; with no
// verified result the whole escrow is refunded.
func (t *Task) Abort(reason string) error {
	if err := t.open(); err != nil {
		return err
	}
	if reason == "" {
		reason = "aborted"
	}
	t.Aborted = reason
	return nil
}
