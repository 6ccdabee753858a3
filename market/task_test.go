package market

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
	"pgregory.net/rapid"
)

func genConfig(t *rapid.T) Config {
	c := DefaultConfig()
	c.SpeedTolerancePPM = rapid.Uint32Range(0, 500_000).Draw(t, "tol")
	c.SpeedSlack = time.Duration(rapid.SampledFrom([]int64{0, 1, 10_000, 3_000_000}).Draw(t, "speedslack")) * time.Microsecond
	c.OperatorCutPPM = rapid.SampledFrom([]uint32{0, 1, 50_000, 333_333, PPM}).Draw(t, "cut")
	c.MaxRunTime = time.Duration(rapid.Int64Range(1, 3*3600).Draw(t, "maxrun")) * time.Second
	c.MaxExtraReplicas = rapid.IntRange(0, 4).Draw(t, "extra")
	c.VerifierTiebreak = rapid.Bool().Draw(t, "tiebreak")
	if err := c.Validate(); err != nil {
		t.Fatalf("generated config invalid: %v", err)
	}
	return c
}

func genBid(t *rapid.T, c Config) Bid {
	return Bid{
		Consumer: "C", Group: "g",
		MaxPrice: protocol.Micros(rapid.Int64Range(0, 50_000_000_000).Draw(t, "maxprice")),
		MinSpeed: protocol.Speed(rapid.Uint32Range(0, 3000).Draw(t, "minspeed")),
		Replicas: rapid.IntRange(MinReplicas, 4).Draw(t, "replicas"),
	}
}

// genExec draws an execution time biased towards the interesting edges.
func genExec(t *rapid.T, maxRun int64, label string) int64 {
	return rapid.OneOf(
		rapid.Int64Range(0, maxRun),
		rapid.Int64Range(maxRun-2, maxRun+2),
		rapid.Int64Range(0, 3),
		rapid.Int64Range(maxRun, 2*maxRun),
	).Draw(t, label)
}

// drive plays a random sequence of events on a task, then follows Decide
// until the task is final. It returns the task.
func drive(t *rapid.T, c Config) *Task {
	bid := genBid(t, c)
	task, err := NewTask(bid, 0, c)
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	if task.Escrowed != ReplicaEscrow(bid.MaxPrice, c.MaxRunTime.Microseconds(), max(bid.MinSpeed, c.MinRatedSpeed))*protocol.Micros(bid.Replicas) {
		t.Fatalf("initial escrow %s", task.Escrowed)
	}
	results := []string{"bafyA", "bafyA", "bafyA", "bafyB", "bafyC"}
	maxRun := task.Terms.MaxRunMicros
	// The job's metered work, the same on every honest replica; honest
	// workers report times consistent with their speed (± up to 30%).
	jobWork := rapid.OneOf(rapid.Uint64Range(0, MaxWork(maxRun)), rapid.Uint64Range(0, 5000)).Draw(t, "job")
	honest := func(s protocol.Speed, label string) int64 {
		if rapid.IntRange(0, 3).Draw(t, label+"-liar") == 3 {
			return genExec(t, maxRun, label)
		}
		f := rapid.Int64Range(700_000, 1_300_000).Draw(t, label+"-jitter")
		return int64(mulDiv(jobWork/uint64(s), uint64(f), PPM))
	}
	work := func(label string) uint64 {
		switch rapid.IntRange(0, 9).Draw(t, label) {
		case 0:
			return jobWork + 1
		case 1:
			return rapid.Uint64Range(0, 2*MaxWork(maxRun)).Draw(t, label+"-lie")
		}
		return jobWork
	}
	next := 0
	now := int64(1)
	assign := func() {
		w := fmt.Sprintf("W%d", next)
		next++
		m := Match{
			Worker: w,
			Owner:  rapid.SampledFrom([]string{"", "o1", "o2", "o3", w}).Draw(t, "owner"),
			Price:  protocol.Micros(rapid.Int64Range(0, int64(bid.MaxPrice)).Draw(t, "price")),
			Speed:  protocol.Speed(rapid.Uint32Range(max(uint32(bid.MinSpeed), 1), 5000).Draw(t, "speed")),
		}
		before := task.Escrowed
		top, err := task.Assign(m, now)
		if err != nil {
			if !errors.Is(err, ErrTaskFinal) && !errors.Is(err, ErrConstraint) {
				t.Fatalf("Assign: %v", err)
			}
			return
		}
		if task.Escrowed != before+top {
			t.Fatalf("top-up %s does not match escrow %s → %s", top, before, task.Escrowed)
		}
	}
	running := func() []string {
		var ws []string
		for _, r := range task.Runs {
			if r.State == ReplicaAssigned {
				ws = append(ws, r.Worker)
			}
		}
		return ws
	}
	receipt := func(w string) {
		rc := Receipt{
			ResultCID: rapid.SampledFrom(results).Draw(t, "result"),
			ExitCode:  int32(rapid.IntRange(0, 1).Draw(t, "exit")),
			Stopped:   rapid.IntRange(0, 20).Draw(t, "stopped") == 7,
			Work:      work("work"),
		}
		for _, r := range task.Runs {
			if r.Worker == w {
				rc.ExecMicros = honest(r.Speed, "exec")
			}
		}
		switch rapid.IntRange(0, 3).Draw(t, "slot") {
		case 0: // not observed
		case 1:
			rc.SlotMicros = rapid.Int64Range(1, 2*maxRun).Draw(t, "slot-any")
		default: // the run plus some transfer
			rc.SlotMicros = max(rc.ExecMicros, 1) + rapid.Int64Range(0, 2000).Draw(t, "slot-extra")
		}
		switch rapid.IntRange(0, 3).Draw(t, "window") {
		case 0: // not observed
		case 1: // anything, often shorter than the claim
			rc.WindowMicros = rapid.Int64Range(0, 2*maxRun).Draw(t, "window-any")
		default: // an honest window: the run plus transfer
			rc.WindowMicros = rc.ExecMicros + rapid.Int64Range(0, 2000).Draw(t, "window-extra")
		}
		if err := task.Receipt(w, rc, now); err != nil && !errors.Is(err, ErrTaskFinal) {
			t.Fatalf("Receipt: %v", err)
		}
	}
	verifierRun := func() {
		run := VerifierRun{
			ResultCID: rapid.SampledFrom(results).Draw(t, "vresult"),
			ExitCode:  int32(rapid.IntRange(0, 1).Draw(t, "vexit")),
			Speed:     protocol.Speed(rapid.Uint32Range(1, 5000).Draw(t, "vspeed")),
			Work:      work("vwork"),
		}
		run.ExecMicros = honest(run.Speed, "vexec")
		err := task.VerifierResult(run)
		if err != nil && !errors.Is(err, ErrTaskFinal) && !errors.Is(err, ErrVerifierDone) {
			t.Fatalf("VerifierResult: %v", err)
		}
	}
	// Random prefix of events.
	for range rapid.IntRange(0, 12).Draw(t, "events") {
		now += rapid.Int64Range(0, 400_000).Draw(t, "dt")
		switch rapid.IntRange(0, 7).Draw(t, "event") {
		case 0, 1:
			assign()
		case 2, 3:
			if ws := running(); len(ws) > 0 {
				receipt(rapid.SampledFrom(ws).Draw(t, "who"))
			}
		case 4:
			if ws := running(); len(ws) > 0 {
				_ = task.Fail(rapid.SampledFrom(ws).Draw(t, "who"), "gone")
			}
		case 5:
			task.Sweep(now, c)
		case 6:
			_ = task.RequestVerifier()
		case 7:
			if rapid.IntRange(0, 3).Draw(t, "vnow") == 2 {
				verifierRun()
			}
		}
		if rapid.IntRange(0, 40).Draw(t, "abort") == 17 {
			_ = task.Abort("test")
		}
	}
	// Follow the decisions to the end.
	for steps := 0; ; steps++ {
		if steps > 200 {
			t.Fatalf("task did not finish: %+v", task.Decide())
		}
		d := task.Decide()
		switch d.Kind {
		case DecisionVerified, DecisionFailed:
			return task
		case DecisionNeed:
			if d.Verifier {
				if d.Need != 0 {
					t.Fatalf("verifier decision also asks for %d workers", d.Need)
				}
				if err := task.RequestVerifier(); err != nil {
					t.Fatalf("RequestVerifier after need: %v", err)
				}
				verifierRun()
				continue
			}
			if d.Need < 1 || len(task.Runs)+d.Need > task.Terms.MaxRuns {
				t.Fatalf("need %d with %d of %d runs", d.Need, len(task.Runs), task.Terms.MaxRuns)
			}
			for range d.Need {
				assign()
			}
		case DecisionWait:
			if ws := running(); len(ws) > 0 {
				receipt(ws[0])
			} else if task.VerifierPending {
				verifierRun()
			} else {
				t.Fatalf("wait with nothing pending: %+v", d)
			}
		}
	}
}

func bigOf(v ...int64) *big.Int {
	r := big.NewInt(1)
	for _, x := range v {
		r.Mul(r, big.NewInt(x))
	}
	return r
}

// oraclePaid is the speed rule, restated with big integers: with c_j =
// max(t_j × s_j − slack × 1000, 0), t_j the reported time bounded by the
// window, over the verified replicas and c_min the least, replica r is
// paid iff it has the verified (result, exit, work) and
// c_r × (10⁶ − tol) ≤ max(W, c_min) × 10⁶.
func oraclePaid(task *Task, d Decision, r Replica) bool {
	verified := func(o Replica) bool {
		return o.State == ReplicaReported && o.Receipt.ResultCID == d.Result && o.Receipt.ExitCode == d.ExitCode &&
			o.Receipt.Work == d.Work
	}
	if !verified(r) {
		return false
	}
	claimed := func(o Replica) *big.Int {
		t := o.Receipt.ExecMicros
		if o.Receipt.WindowMicros > 0 && o.Receipt.WindowMicros < t {
			t = o.Receipt.WindowMicros
		}
		c := bigOf(int64(o.Speed), t)
		c.Sub(c, bigOf(int64(protocol.SpeedUnit), task.Terms.SlackMicros))
		if c.Sign() < 0 {
			c.SetInt64(0)
		}
		return c
	}
	var cmin *big.Int
	for _, o := range task.Runs {
		if verified(o) {
			if c := claimed(o); cmin == nil || c.Cmp(cmin) < 0 {
				cmin = c
			}
		}
	}
	ref := new(big.Int).SetUint64(d.Work)
	if cmin.Cmp(ref) > 0 {
		ref = cmin
	}
	tol := int64(task.Terms.TolerancePPM)
	lhs := new(big.Int).Mul(claimed(r), big.NewInt(PPM-tol))
	return lhs.Cmp(new(big.Int).Mul(ref, big.NewInt(PPM))) <= 0
}

// oracleRefused restates the impossible claims with big integers.
func oracleRefused(task *Task, rc *Receipt) bool {
	if rc.Stopped {
		return false
	}
	if rc.WindowMicros > 0 && rc.ExecMicros > rc.WindowMicros {
		return true
	}
	if rc.Work > MaxWork(task.Terms.MaxRunMicros) {
		return true
	}
	return new(big.Int).SetUint64(rc.Work).Cmp(bigOf(rc.ExecMicros, int64(task.Terms.MaxSpeed))) > 0
}

func TestTaskProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		task := drive(t, c)
		d := task.Decide()

		// Persisted and resumed, the task decides the same.
		js, err := json.Marshal(task)
		if err != nil {
			t.Fatal(err)
		}
		var back Task
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Decide(), d) {
			t.Fatalf("decision changed across JSON round trip")
		}

		if len(d.Verdicts) != len(task.Runs) {
			t.Fatalf("%d verdicts for %d replicas", len(d.Verdicts), len(task.Runs))
		}
		paid := map[string]bool{}
		for i, v := range d.Verdicts {
			r := task.Runs[i]
			if v.Worker != r.Worker {
				t.Fatalf("verdict %d is for %s, replica is %s", i, v.Worker, r.Worker)
			}
			wrong := d.Kind == DecisionVerified && r.State == ReplicaReported &&
				(r.Receipt.ResultCID != d.Result || r.Receipt.ExitCode != d.ExitCode || r.Receipt.Work != d.Work)
			refused := r.Receipt != nil && oracleRefused(task, r.Receipt) && r.State == ReplicaRefused
			if (r.State == ReplicaRefused) != (r.Receipt != nil && oracleRefused(task, r.Receipt) && r.State != ReplicaAssigned &&
				r.State != ReplicaFailed) {
				t.Fatalf("replica %s (%+v) is %s; oracle refused %v", r.Worker, r.Receipt, r.State, oracleRefused(task, r.Receipt))
			}
			if v.Strike != (wrong || refused) || (v.Outcome == OutcomeWrong) != wrong || (v.Outcome == OutcomeRefused) != refused {
				t.Fatalf("replica %s: strike %v outcome %s, wrong result %v, refused %v", r.Worker, v.Strike, v.Outcome, wrong, refused)
			}
			want := d.Kind == DecisionVerified && oraclePaid(task, d, r)
			if (v.Outcome == OutcomePaid) != want {
				t.Fatalf("replica %s (%s, %+v): outcome %s, oracle paid %v; decision %+v", r.Worker, r.State, r.Receipt, v.Outcome, want, d)
			}
			if v.Outcome == OutcomePaid {
				paid[r.Worker] = true
				if v.BilledMicros != int64(r.Receipt.Work/uint64(r.Speed)) || v.Work != r.Receipt.Work {
					t.Fatalf("billed %dµs for work %d at speed %s", v.BilledMicros, r.Receipt.Work, r.Speed)
				}
			} else if v.BilledMicros != 0 {
				t.Fatalf("unpaid replica billed %dµs", v.BilledMicros)
			}
		}
		// Carries left by earlier settlements of the same pairs: any
		// remainder below a micro-unit.
		carries := Carries{}
		for _, r := range task.Runs {
			if rapid.Bool().Draw(t, "carried") {
				carries[CarryKey(task.Consumer, r.Worker)] = rapid.Uint64Range(0, PicosPerMicro-1).Draw(t, "carry")
			}
		}
		carries[CarryKey(task.Consumer, OperatorAccount)] = rapid.Uint64Range(0, PicosPerMicro-1).Draw(t, "opcarry")
		before := map[string]uint64{}
		for k, v := range carries {
			before[k] = v
		}
		s, err := task.Settle(carries)
		if err != nil {
			t.Fatalf("Settle: %v", err)
		}
		if _, err := task.Settle(carries); !errors.Is(err, ErrAlreadySettled) {
			t.Fatalf("second Settle: %v", err)
		}
		if _, err := back.Settle(Carries{}); err != nil {
			t.Fatalf("Settle of the resumed copy: %v", err)
		}
		// Money in picos is conserved per pair: carry before + exact share
		// = micro-units posted × 10⁶ + carry after.
		exactIn := map[string]*big.Int{}
		posted := map[string]int64{}
		for _, p := range s.Payouts {
			cutP := mulDiv(uint64(p.Exact), uint64(task.Terms.OperatorCutPPM), PPM)
			wk, ok := CarryKey(task.Consumer, p.Worker), CarryKey(task.Consumer, OperatorAccount)
			for k, v := range map[string]uint64{wk: uint64(p.Exact) - cutP, ok: cutP} {
				if exactIn[k] == nil {
					exactIn[k] = new(big.Int)
				}
				exactIn[k].Add(exactIn[k], new(big.Int).SetUint64(v))
			}
			posted[wk] += int64(p.Pay)
			posted[ok] += int64(p.Cut)
		}
		for k, in := range exactIn {
			lhs := new(big.Int).Add(in, new(big.Int).SetUint64(before[k]))
			rhs := new(big.Int).Add(bigOf(posted[k], PicosPerMicro), new(big.Int).SetUint64(carries[k]))
			if lhs.Cmp(rhs) != 0 || carries[k] >= PicosPerMicro {
				t.Fatalf("pair %q: carry %d + exact %s ≠ posted %d µ + carry %d", k, before[k], in, posted[k], carries[k])
			}
		}
		if s.Escrowed != task.Escrowed || s.Escrowed != task.ReplicaEscrow()*protocol.Micros(task.EscrowSlots) {
			t.Fatalf("escrowed %s, task %s, slots %d", s.Escrowed, task.Escrowed, task.EscrowSlots)
		}
		if s.Escrowed != s.Charged+s.Refund || s.Refund < 0 || s.Charged < 0 || s.OperatorCut < 0 {
			t.Fatalf("escrow %s ≠ charged %s + refund %s", s.Escrowed, s.Charged, s.Refund)
		}
		var sumPay, sumCut, sumCharge protocol.Micros
		billed := big.NewInt(0)
		for _, p := range s.Payouts {
			if !paid[p.Worker] {
				t.Fatalf("payout to unpaid %s", p.Worker)
			}
			delete(paid, p.Worker)
			if p.Pay < 0 || p.Cut < 0 || p.Charge != p.Pay+p.Cut || p.Price > task.MaxPrice {
				t.Fatalf("bad payout %+v", p)
			}
			// The exact charge is price × work / (speed × 3600) picos, and
			// what is posted is within the carries of it: < share + 2 µ.
			exact := new(big.Int).Mul(big.NewInt(int64(p.Price)), new(big.Int).SetUint64(p.Work))
			exact.Quo(exact, bigOf(int64(p.Speed), 3600))
			if exact.Cmp(new(big.Int).SetUint64(uint64(p.Exact))) != 0 {
				t.Fatalf("exact charge %d, want %s", p.Exact, exact)
			}
			if bigOf(int64(p.Charge)-2, PicosPerMicro).Cmp(exact) >= 0 {
				t.Fatalf("charge %s beyond its exact %s picos + carries", p.Charge, exact)
			}
			sumPay += p.Pay
			sumCut += p.Cut
			sumCharge += p.Charge
			mx := new(big.Int).Mul(big.NewInt(int64(task.MaxPrice)), new(big.Int).SetUint64(p.Work))
			billed.Add(billed, mx.Quo(mx, bigOf(int64(p.Speed), 3600)))
		}
		if len(paid) != 0 {
			t.Fatalf("paid replicas without payout: %v", paid)
		}
		if sumCharge != s.Charged || sumPay+sumCut != s.Charged || sumCut != s.OperatorCut {
			t.Fatalf("charged %s ≠ Σ pay %s + cut %s", s.Charged, sumPay, sumCut)
		}
		// Never above max price × billed time (with < 2 µ of carries per
		// payout), nor the escrow.
		if bigOf(int64(s.Charged)-2*int64(len(s.Payouts)), PicosPerMicro).Cmp(billed) > 0 {
			t.Fatalf("charged %s above max price × billed time %s picos", s.Charged, billed)
		}
		if d.Kind == DecisionFailed && (s.Charged != 0 || len(s.Payouts) != 0) {
			t.Fatalf("failed task charged %s", s.Charged)
		}
		// A settled task takes no more events.
		if _, err := task.Assign(Match{Worker: "late", Speed: 1000}, 0); !errors.Is(err, ErrAlreadySettled) {
			t.Fatalf("Assign after settle: %v", err)
		}
	})
}

func TestAssignRefusesOutsideBid(t *testing.T) {
	c := DefaultConfig()
	task, err := NewTask(Bid{Consumer: "C", MaxPrice: 1_000_000, MinSpeed: 500, Replicas: 2}, 0, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Match{
		{Worker: "W", Price: 1_000_001, Speed: 1000},
		{Worker: "W", Price: -1, Speed: 1000},
		{Worker: "W", Price: 1, Speed: 499},
		{Worker: "", Price: 1, Speed: 1000},
	} {
		if _, err := task.Assign(m, 0); !errors.Is(err, ErrConstraint) {
			t.Errorf("Assign(%+v) = %v, want ErrConstraint", m, err)
		}
	}
	if len(task.Runs) != 0 {
		t.Fatalf("refused assignments were recorded: %+v", task.Runs)
	}
	// Keep failing replicas: the task fails once no further replicas can
	// make up the wanted count, and then refuses assignments.
	var err2 error
	for i := 0; err2 == nil; i++ {
		w := fmt.Sprintf("W%d", i)
		if _, err2 = task.Assign(Match{Worker: w, Price: 1, Speed: 1000}, 0); err2 == nil {
			if err := task.Fail(w, "gone"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !errors.Is(err2, ErrTaskFinal) || len(task.Runs) > task.Terms.MaxRuns {
		t.Fatalf("after %d replicas: %v", len(task.Runs), err2)
	}
	if d := task.Decide(); d.Kind != DecisionFailed {
		t.Fatalf("all replicas failed, decision %+v", d)
	}
}

func TestReceiptValidation(t *testing.T) {
	task, _ := NewTask(Bid{Consumer: "C", MaxPrice: 1, Replicas: 2}, 0, DefaultConfig())
	if _, err := task.Assign(Match{Worker: "W", Speed: 1000}, 0); err != nil {
		t.Fatal(err)
	}
	if err := task.Receipt("W", Receipt{ResultCID: "x", ExecMicros: -1}, 0); !errors.Is(err, ErrBadReceipt) {
		t.Errorf("negative time: %v", err)
	}
	if err := task.Receipt("W", Receipt{ExecMicros: 5}, 0); !errors.Is(err, ErrBadReceipt) {
		t.Errorf("empty result: %v", err)
	}
	if err := task.Receipt("nobody", Receipt{ResultCID: "x"}, 0); !errors.Is(err, ErrUnknownReplica) {
		t.Errorf("unknown worker: %v", err)
	}
	if err := task.Receipt("W", Receipt{ResultCID: "x", ExecMicros: 5}, 0); err != nil {
		t.Fatal(err)
	}
	if err := task.Receipt("W", Receipt{ResultCID: "x", ExecMicros: 5}, 0); !errors.Is(err, ErrNotRunning) {
		t.Errorf("second receipt: %v", err)
	}
	if err := task.VerifierResult(VerifierRun{ResultCID: "x", ExecMicros: 1}); !errors.Is(err, ErrBadReceipt) {
		t.Errorf("verifier run without speed: %v", err)
	}
	if err := task.VerifierResult(VerifierRun{ResultCID: "x", ExecMicros: 5, Speed: 1000}); err != nil {
		t.Fatal(err)
	}
	if err := task.VerifierResult(VerifierRun{ResultCID: "x", ExecMicros: 5, Speed: 1000}); !errors.Is(err, ErrTaskFinal) {
		t.Errorf("second verifier run: %v", err)
	}
	d := task.Decide()
	if d.Kind != DecisionVerified || !d.Trusted || d.Verdicts[0].Outcome != OutcomePaid {
		t.Fatalf("decision %+v", d)
	}
}

func TestChargePicosMatchesBigInt(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := rapid.Int64Range(0, 1<<62).Draw(t, "price")
		w := rapid.Uint64Range(0, MaxWork(maxRunTimeLimit.Microseconds())).Draw(t, "work")
		s := rapid.Uint32Range(1, 1<<20).Draw(t, "speed")
		want := new(big.Int).Mul(big.NewInt(p), new(big.Int).SetUint64(w))
		want.Quo(want, bigOf(int64(s), 3600))
		got := ChargePicos(protocol.Micros(p), w, protocol.Speed(s))
		if !want.IsUint64() {
			if got != Picos(1<<64-1) {
				t.Fatalf("overflowing charge %d not saturated", got)
			}
			return
		}
		if uint64(got) != want.Uint64() {
			t.Fatalf("ChargePicos(%d, %d, %d) = %d, want %s", p, w, s, got, want)
		}
	})
}

func TestWorkArithmetic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.Uint32().Draw(t, "speed")
		us := rapid.Int64Range(0, 1<<62).Draw(t, "micros")
		m := rapid.Uint64Range(0, 2*PPM).Draw(t, "mul")
		d := rapid.Uint64Range(1, 1<<50).Draw(t, "div")
		w := WorkOf(protocol.Speed(s), us)
		big128 := func(w Work) *big.Int {
			v := new(big.Int).Lsh(new(big.Int).SetUint64(w.Hi), 64)
			return v.Or(v, new(big.Int).SetUint64(w.Lo))
		}
		if big128(w).Cmp(bigOf(int64(s), us)) != 0 {
			t.Fatalf("WorkOf(%d, %d) = %v", s, us, w)
		}
		prod := new(big.Int).Mul(big128(w), new(big.Int).SetUint64(m))
		if prod.BitLen() <= 128 && big128(w.mul(m)).Cmp(prod) != 0 {
			t.Fatalf("mul wrong")
		}
		q := new(big.Int).Quo(big128(w), new(big.Int).SetUint64(d))
		if q.IsUint64() && w.div(d) != q.Uint64() {
			t.Fatalf("div wrong")
		}
		v := WorkOf(protocol.Speed(rapid.Uint32().Draw(t, "s2")), rapid.Int64Range(0, 1<<62).Draw(t, "t2"))
		if w.Cmp(v) != big128(w).Cmp(big128(v)) {
			t.Fatalf("Cmp wrong")
		}
	})
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	d := DefaultConfig()
	if d.SpeedTolerancePPM != 150_000 || d.SpotCheckPPM != 50_000 || d.OperatorCutPPM != 50_000 ||
		d.MaxRunTime != 2*time.Hour || d.StrikesToExclude != 3 || !d.VerifierTiebreak {
		t.Fatalf("defaults changed: %+v", d)
	}
	bad := []func(*Config){
		func(c *Config) { c.SpeedTolerancePPM = PPM },
		func(c *Config) { c.SpotCheckPPM = PPM + 1 },
		func(c *Config) { c.OperatorCutPPM = PPM + 1 },
		func(c *Config) { c.MaxRunTime = 0 },
		func(c *Config) { c.MaxRunTime = 8 * 24 * time.Hour },
		func(c *Config) { c.HeartbeatTimeout = 0 },
		func(c *Config) { c.DeadlineSlack = -1 },
		func(c *Config) { c.MaxReplicas = 1 },
		func(c *Config) { c.MaxExtraReplicas = -1 },
		func(c *Config) { c.StrikesToExclude = 0 },
		func(c *Config) { c.RatingPrior = -1 },
	}
	for i, f := range bad {
		c := DefaultConfig()
		f(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("case %d: Validate = %v, want ErrInvalidConfig", i, err)
		}
	}
	if _, err := NewTask(Bid{Consumer: "C", MaxPrice: 1 << 62, Replicas: 2}, 0, DefaultConfig()); !errors.Is(err, ErrOverflow) {
		t.Errorf("huge bid: %v", err)
	}
	if _, err := NewTask(Bid{Consumer: "C", MaxPrice: 1, Replicas: 1}, 0, DefaultConfig()); !errors.Is(err, ErrInvalidBid) {
		t.Errorf("one replica: %v", err)
	}
}
