package verifier

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// WorkerInfo is the operator's view of one worker.
type WorkerInfo struct {
	ID             string          `json:"id"`
	Owner          string          `json:"owner,omitempty"`
	MinPrice       protocol.Micros `json:"min_price"`
	Slots          uint32          `json:"slots"`
	Addrs          []string        `json:"addrs,omitempty"`
	Registered     int64           `json:"registered"`
	Rated          bool            `json:"rated"`
	Speed          protocol.Speed  `json:"speed"`
	RatingIssued   int64           `json:"rating_issued,omitempty"`
	RatingExpires  int64           `json:"rating_expires,omitempty"`
	Benchmarking   bool            `json:"benchmarking"`
	BenchFailures  int             `json:"bench_failures"`
	ReliabilityPPM uint32          `json:"reliability_ppm"`
	MTTFMillis     int64           `json:"mttf_ms"` // 0: never failed
	UptimeMillis   int64           `json:"uptime_ms"`
	Completed      int             `json:"completed"`
	Failures       int             `json:"failures"`
	Strikes        int             `json:"strikes"`
	StruckOut      bool            `json:"struck_out"`
	SpeedChecks    int             `json:"speed_checks"`
	SpeedMisses    int             `json:"speed_misses"`
	SpotChecks     SpotChecks      `json:"spot_checks"`
	SpeedHistory   []SpeedSample   `json:"speed_history,omitempty"`
	Live           bool            `json:"live"`
	LastSeen       int64           `json:"last_seen,omitempty"`
	InBook         bool            `json:"in_book"`
	Capacity       int             `json:"capacity"`
	Outstanding    int             `json:"outstanding"` // replicas held now
}

// Workers returns every registered worker, sorted by ID.
func (v *Verifier) Workers() []WorkerInfo {
	now := v.nowMs()
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]WorkerInfo, 0, len(v.workers))
	for _, ws := range v.workers {
		r := ws.rec
		w := ws.id.String()
		mttf, _ := r.Rep.MTTF()
		_, inBook := v.book.Offers[w]
		info := WorkerInfo{
			ID: r.ID, Owner: r.Owner, MinPrice: max(r.MinPrice, r.OfferPrice), Slots: r.Slots, Addrs: r.Addrs, Registered: r.Registered,
			Rated: r.Speed > 0, Speed: r.Speed, RatingIssued: r.RatingIssued, RatingExpires: r.RatingExpiry,
			Benchmarking: r.Bench != "" || ws.benchBusy, BenchFailures: r.BenchFailures,
			ReliabilityPPM: r.Rep.Rating(v.cfg.Market), MTTFMillis: mttf, UptimeMillis: r.Rep.Uptime,
			Completed: r.Rep.Completed, Failures: r.Rep.Failures, Strikes: r.Rep.Strikes, StruckOut: r.Rep.StruckOut(v.cfg.Market),
			SpeedChecks: r.Rep.SpeedChecks, SpeedMisses: r.Rep.SpeedMisses, SpotChecks: r.SpotChecks,
			SpeedHistory: slices.Clone(r.History), Live: v.liveLocked(ws, now), LastSeen: ws.lastSeen, InBook: inBook,
			Capacity: int(r.Slots) * v.queueDepth(ws.execMicros), Outstanding: v.book.Reserved[w],
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b WorkerInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Worker returns one worker's view.
func (v *Verifier) Worker(id peer.ID) (WorkerInfo, error) {
	for _, w := range v.Workers() {
		if w.ID == id.String() {
			return w, nil
		}
	}
	return WorkerInfo{}, fmt.Errorf("%w: worker %s", ErrNotFound, id)
}

// ReplicaView is one replica of a task and its verdict.
type ReplicaView struct {
	Worker     string                `json:"worker"`
	Assignment string                `json:"assignment,omitempty"`
	State      string                `json:"state"`             // assigned, reported, failed, timed-out
	Verdict    string                `json:"verdict,omitempty"` // paid, too-slow, wrong-result, failed, timed-out, unjudged
	Reason     string                `json:"reason,omitempty"`
	Status     protocol.ResultStatus `json:"status"`
	Result     string                `json:"result,omitempty"`
	ExecMicros uint64                `json:"exec_us,omitempty"`
	// Work is the metered work the replica reported; WindowMicros the
	// window the verifier observed for its receipt (the longest time it
	// may claim); SlotMicros its busy slot time, the observed time its
	// speed is judged and rated on (docs/market.md §2, §3, §10).
	Work           uint64          `json:"work,omitempty"`
	WindowMicros   int64           `json:"window_us,omitempty"`
	SlotMicros     int64           `json:"slot_us,omitempty"`
	Price          protocol.Micros `json:"price"`
	RatedSpeed     protocol.Speed  `json:"rated_speed"`
	EffectiveSpeed protocol.Speed  `json:"effective_speed,omitempty"`
	Paid           protocol.Micros `json:"paid"` // worker's pay (after the operator's cut)
	Charged        protocol.Micros `json:"charged"`
	Strike         bool            `json:"strike,omitempty"`
	Agreed         bool            `json:"agreed"` // reported the verified result
}

// TaskInfo is the verification outcome of one task.
type TaskInfo struct {
	Index       uint32          `json:"index"`
	State       string          `json:"state"` // queued, running, verified, failed, canceled
	Reason      string          `json:"reason,omitempty"`
	Result      string          `json:"result,omitempty"`
	ExitCode    uint32          `json:"exit_code"`
	Work        uint64          `json:"work,omitempty"` // the verified result's metered work
	Replicas    []ReplicaView   `json:"replicas"`
	Agreed      int             `json:"agreed"`
	SpotChecked bool            `json:"spot_checked"` // the verifier ran it too (spot check or tie-break)
	VerifierRan bool            `json:"verifier_ran"`
	VerifierOut string          `json:"verifier_result,omitempty"`
	Trusted     bool            `json:"trusted"` // the reference was the verifier's run
	Escrowed    protocol.Micros `json:"escrowed"`
	Charged     protocol.Micros `json:"charged"`
	OperatorCut protocol.Micros `json:"operator_cut"`
	Refund      protocol.Micros `json:"refund"`
	Strikes     int             `json:"strikes"`
	Posted      bool            `json:"posted"`
	Released    bool            `json:"released"`
	// Undelivered: settled, but its consumer never acknowledged the
	// release and the group was given up on.
	Undelivered bool `json:"undelivered,omitempty"`
}

// GroupInfo is a job group with its tasks' outcomes.
type GroupInfo struct {
	ID            string          `json:"id"`
	Consumer      string          `json:"consumer"`
	Module        string          `json:"module"`
	MaxPrice      protocol.Micros `json:"max_price"`
	MinSpeed      protocol.Speed  `json:"min_speed"`
	Replicas      int             `json:"replicas"`
	TimeoutMillis uint64          `json:"timeout_ms"`
	Created       int64           `json:"created"`
	Canceled      bool            `json:"canceled"`
	Open          bool            `json:"open"`
	Counts        map[string]int  `json:"counts"`
	Charged       protocol.Micros `json:"charged"`
	// Undelivered is how many results of a closed group its consumer
	// never acknowledged (given up on at GaveUp, unix ms; a submit of the
	// group by the consumer releases them again).
	Undelivered int        `json:"undelivered,omitempty"`
	GaveUp      int64      `json:"gave_up,omitempty"`
	Tasks       []TaskInfo `json:"tasks,omitempty"`
}

// Groups lists every open group (without tasks) and, when all is set, the
// closed ones too.
func (v *Verifier) Groups(all bool) ([]GroupInfo, error) {
	v.mu.Lock()
	var out []GroupInfo
	seen := map[string]bool{}
	for _, g := range v.groups {
		gi := groupInfo(g.rec)
		gi.Open = true
		gi.Counts = map[string]int{}
		for _, t := range g.tasks {
			gi.Counts[taskStateName(&t.rec)]++
		}
		out = append(out, gi)
		seen[g.rec.ID] = true
	}
	v.mu.Unlock()
	if all {
		und, err := v.undelivered()
		if err != nil {
			return nil, err
		}
		err = v.st.Scan(nsGroup, nil, func(_, val []byte) error {
			var rec groupRecord
			if err := json.Unmarshal(val, &rec); err != nil || seen[rec.ID] {
				return nil
			}
			gi := groupInfo(rec)
			if u, ok := und[rec.ID]; ok {
				gi.Undelivered, gi.GaveUp = u.Tasks, u.GaveUp
			}
			out = append(out, gi)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b GroupInfo) int {
		if a.Created != b.Created {
			return int(a.Created - b.Created)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func groupInfo(r groupRecord) GroupInfo {
	return GroupInfo{ID: r.ID, Consumer: r.Consumer, Module: r.Module, MaxPrice: r.MaxPrice, MinSpeed: r.MinSpeed,
		Replicas: r.Replicas, TimeoutMillis: r.TimeoutMillis, Created: r.Created, Canceled: r.Canceled}
}

// Group returns a group with the verification outcome of every task:
// which workers ran which replicas, whether they agreed, what was paid and
// charged, strikes, and whether the verifier ran it itself.
func (v *Verifier) Group(id protocol.ID) (GroupInfo, error) {
	v.mu.Lock()
	g := v.groups[id]
	var gi GroupInfo
	live := map[uint32]taskRecord{}
	if g != nil {
		gi = groupInfo(g.rec)
		gi.Open = true
		for i, t := range g.tasks {
			var c taskRecord // a deep copy
			_ = decodeTaskRecord(encodeTaskRecord(&t.rec), &c)
			live[i] = c
		}
	}
	v.mu.Unlock()
	if g == nil {
		b, err := v.st.Get(nsGroup, id[:])
		if err != nil {
			return GroupInfo{}, fmt.Errorf("%w: group %s", ErrNotFound, id)
		}
		var rec groupRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return GroupInfo{}, fmt.Errorf("%w: group %s: %v", ErrCorrupt, id, err)
		}
		gi = groupInfo(rec)
	}
	gi.Counts = map[string]int{}
	released, err := v.releasedTasks(id)
	if err != nil {
		return GroupInfo{}, err
	}
	err = v.st.Scan(nsTask, id[:], func(_, val []byte) error {
		var rec taskRecord
		if err := decodeTaskRecord(val, &rec); err != nil || rec.M == nil {
			return nil
		}
		rec.Released = rec.Released || released[rec.Index]
		if l, ok := live[rec.Index]; ok {
			rec = l
			delete(live, rec.Index)
		}
		gi.Tasks = append(gi.Tasks, taskInfo(&rec))
		return nil
	})
	if err != nil {
		return GroupInfo{}, err
	}
	for _, rec := range live {
		gi.Tasks = append(gi.Tasks, taskInfo(&rec))
	}
	slices.SortFunc(gi.Tasks, func(a, b TaskInfo) int { return int(a.Index) - int(b.Index) })
	var gaveUp *undeliveredRecord
	if !gi.Open {
		if b, err := v.st.Get(nsUndelivered, id[:]); err == nil {
			var u undeliveredRecord
			if json.Unmarshal(b, &u) == nil {
				gaveUp = &u
				gi.GaveUp = u.GaveUp
			}
		}
	}
	for i := range gi.Tasks {
		t := &gi.Tasks[i]
		if gaveUp != nil && t.Posted && !t.Released && t.State != "queued" && t.State != "running" {
			t.Undelivered = true
			gi.Undelivered++
		}
		gi.Counts[t.State]++
		gi.Charged += t.Charged
	}
	return gi, nil
}

func taskStateName(r *taskRecord) string {
	switch {
	case r.Settlement != nil && r.Outcome == protocol.OutcomeVerified:
		return "verified"
	case r.Settlement != nil && r.Outcome == protocol.OutcomeCanceled:
		return "canceled"
	case r.Settlement != nil:
		return "failed"
	case r.WaitingSince > 0 || len(r.M.Runs) == 0:
		return "queued"
	}
	return "running"
}

func taskInfo(r *taskRecord) TaskInfo {
	m := r.M
	ti := TaskInfo{Index: r.Index, State: taskStateName(r), Reason: r.Reason, Escrowed: m.Escrowed,
		SpotChecked: r.SpotCheck || m.Verifier != nil || m.VerifierPending, VerifierRan: r.Own != nil && r.Own.Result != "",
		Posted: r.Posted, Released: r.Released}
	if ti.Reason == "" && ti.State == "queued" {
		ti.Reason = r.WaitReason
	}
	if r.Own != nil {
		ti.VerifierOut = r.Own.Result
	}
	var verdicts []market.Verdict
	pay := map[int]market.Payout{}
	if s := r.Settlement; s != nil {
		ti.Charged, ti.OperatorCut, ti.Refund = s.Charged, s.OperatorCut, s.Refund
		ti.Result, ti.ExitCode, ti.Trusted, ti.Work = s.Decision.Result, uint32(s.Decision.ExitCode), s.Decision.Trusted, s.Decision.Work
		verdicts = s.Decision.Verdicts
		j := 0
		for i, vd := range verdicts {
			if vd.Outcome == market.OutcomePaid && j < len(s.Payouts) {
				pay[i] = s.Payouts[j]
				j++
			}
		}
	}
	for i, run := range m.Runs {
		rv := ReplicaView{Worker: run.Worker, State: string(run.State), Reason: run.Reason, Price: run.Price, RatedSpeed: run.Speed}
		if i < len(r.Replicas) {
			info := r.Replicas[i]
			rv.Assignment, rv.Status, rv.Result, rv.ExecMicros = info.Assignment, info.Status, info.Result, info.ExecMicros
		}
		if rc := run.Receipt; rc != nil {
			rv.Work, rv.WindowMicros, rv.SlotMicros = rc.Work, rc.WindowMicros, rc.SlotMicros
		}
		if i < len(verdicts) {
			vd := verdicts[i]
			rv.Verdict, rv.Strike, rv.EffectiveSpeed = string(vd.Outcome), vd.Strike, vd.EffectiveSpeed
			if vd.Strike {
				ti.Strikes++
			}
		}
		if p, ok := pay[i]; ok {
			rv.Paid, rv.Charged = p.Pay, p.Charge
		}
		if run.State == market.ReplicaReported && run.Receipt != nil && ti.Result != "" && run.Receipt.ResultCID == ti.Result {
			rv.Agreed = true
			ti.Agreed++
		}
		ti.Replicas = append(ti.Replicas, rv)
	}
	return ti
}
