package market

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
	"maps"
	"slices"
)

// Transcript format (market/testdata/*.txt), one item a line:
//
//	# comment            kept as is
//	(blank)              kept as is
//	cmd [WORKER] k=v ... an event or a query
//	> text               expected output of the command above
//
// Values contain no spaces. Times (at=) are durations since the start of
// the transcript; amounts and speeds are decimals (protocol.ParseAmount,
// protocol.ParseSpeed); percentages like 15% or 0.5% become ppm.
// `go test ./market -run Transcript -update` rewrites the "> " lines.

var update = flag.Bool("update", false, "rewrite the expected output of market/testdata transcripts")

type kind int

const (
	kString kind = iota
	kInt
	kAmount
	kSpeed
	kDuration
	kPercent
	kBool
	kTiebreak
	kWork
)

type cmdSpec struct {
	worker bool // takes one positional worker id
	keys   map[string]kind
}

var cmdSpecs = map[string]cmdSpec{
	"config": {keys: map[string]kind{"tol": kPercent, "spot": kPercent, "cut": kPercent, "maxrun": kDuration,
		"heartbeat": kDuration, "slack": kDuration, "speedslack": kDuration, "extra": kInt, "maxreplicas": kInt, "strikes": kInt,
		"tiebreak": kTiebreak, "prior": kInt, "minrated": kSpeed, "maxspeed": kSpeed}},
	"task": {keys: map[string]kind{"consumer": kString, "group": kString, "index": kInt, "max": kAmount,
		"minspeed": kSpeed, "replicas": kInt}},
	"assign":    {worker: true, keys: map[string]kind{"owner": kString, "price": kAmount, "speed": kSpeed, "at": kDuration}},
	"heartbeat": {worker: true, keys: map[string]kind{"at": kDuration}},
	"receipt": {worker: true, keys: map[string]kind{"result": kString, "exit": kInt, "work": kWork, "time": kDuration,
		"window": kDuration, "slot": kDuration, "stopped": kBool, "at": kDuration}},
	"fail":      {worker: true, keys: map[string]kind{"reason": kString}},
	"sweep":     {keys: map[string]kind{"at": kDuration}},
	"spotcheck": {keys: map[string]kind{"seed": kInt}},
	"verify":    {keys: map[string]kind{}},
	"verifier": {keys: map[string]kind{"result": kString, "exit": kInt, "work": kWork, "time": kDuration, "speed": kSpeed,
		"stopped": kBool}},
	"observe": {worker: true, keys: map[string]kind{"work": kWork, "slot": kDuration}},
	"carries": {keys: map[string]kind{}},
	"abort":   {keys: map[string]kind{"reason": kString}},
	"decide":  {keys: map[string]kind{}},
	"settle":  {keys: map[string]kind{}},
	"rating":  {worker: true, keys: map[string]kind{}},
	"seen":    {worker: true, keys: map[string]kind{"at": kDuration}},
}

type kv struct{ k, v string }

type step struct {
	line   int
	text   string // comment or blank line, verbatim (cmd == "")
	cmd    string
	worker string
	args   []kv
	want   []string
}

func (s step) get(k string) (string, bool) {
	for _, a := range s.args {
		if a.k == k {
			return a.v, true
		}
	}
	return "", false
}

func parsePercent(v string) (uint32, error) {
	num, ok := strings.CutSuffix(v, "%")
	if !ok {
		return 0, fmt.Errorf("percentage %q lacks %%", v)
	}
	whole, frac, _ := strings.Cut(num, ".")
	if whole == "" || len(frac) > 4 || strings.ContainsAny(whole+frac, "+-") {
		return 0, fmt.Errorf("bad percentage %q", v)
	}
	w, err := strconv.ParseUint(whole, 10, 32)
	if err != nil || w > 100 {
		return 0, fmt.Errorf("bad percentage %q", v)
	}
	f := uint64(0)
	if frac != "" {
		if f, err = strconv.ParseUint(frac+strings.Repeat("0", 4-len(frac)), 10, 32); err != nil {
			return 0, fmt.Errorf("bad percentage %q", v)
		}
	}
	ppm := w*10_000 + f
	if ppm > PPM {
		return 0, fmt.Errorf("percentage %q above 100%%", v)
	}
	return uint32(ppm), nil
}

func checkValue(k kind, v string) error {
	var err error
	switch k {
	case kString:
		if v == "" {
			err = errors.New("empty value")
		}
	case kInt:
		_, err = strconv.ParseInt(v, 10, 32)
	case kWork:
		_, err = parseWork(v)
	case kAmount:
		_, err = protocol.ParseAmount(v)
	case kSpeed:
		_, err = protocol.ParseSpeed(v)
	case kDuration:
		var d time.Duration
		if d, err = time.ParseDuration(v); err == nil && d < 0 {
			err = errors.New("negative duration")
		}
	case kPercent:
		_, err = parsePercent(v)
	case kBool:
		_, err = strconv.ParseBool(v)
	case kTiebreak:
		if v != "verifier" && v != "worker" {
			err = errors.New("want verifier or worker")
		}
	}
	return err
}

// parseTranscript parses a transcript, checking every command, key and
// value, so that a run never meets a malformed step.
func parseTranscript(src string) ([]step, error) {
	var steps []step
	for i, raw := range strings.Split(strings.TrimSuffix(src, "\n"), "\n") {
		n := i + 1
		line := strings.TrimRight(raw, " \t\r")
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			steps = append(steps, step{line: n, text: line})
			continue
		case line == ">" || strings.HasPrefix(line, "> "):
			if len(steps) == 0 || steps[len(steps)-1].cmd == "" {
				return nil, fmt.Errorf("line %d: expected output without a command", n)
			}
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, strings.TrimPrefix(strings.TrimPrefix(line, ">"), " "))
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 { // only exotic white space: keep verbatim
			steps = append(steps, step{line: n, text: line})
			continue
		}
		spec, ok := cmdSpecs[fields[0]]
		if !ok {
			return nil, fmt.Errorf("line %d: unknown command %q", n, fields[0])
		}
		s := step{line: n, cmd: fields[0]}
		rest := fields[1:]
		if spec.worker {
			if len(rest) == 0 || strings.ContainsAny(rest[0], "=#>") {
				return nil, fmt.Errorf("line %d: %s needs a worker id", n, s.cmd)
			}
			s.worker, rest = rest[0], rest[1:]
		}
		seen := map[string]bool{}
		for _, f := range rest {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: %q is not key=value", n, f)
			}
			kd, known := spec.keys[k]
			if !known {
				return nil, fmt.Errorf("line %d: %s takes no key %q", n, s.cmd, k)
			}
			if seen[k] {
				return nil, fmt.Errorf("line %d: key %q twice", n, k)
			}
			seen[k] = true
			if strings.ContainsAny(v, "#") {
				return nil, fmt.Errorf("line %d: %s=%q contains #", n, k, v)
			}
			if err := checkValue(kd, v); err != nil {
				return nil, fmt.Errorf("line %d: %s=%q: %v", n, k, v, err)
			}
			s.args = append(s.args, kv{k, v})
		}
		steps = append(steps, s)
	}
	return steps, nil
}

func formatTranscript(steps []step) string {
	var b strings.Builder
	for _, s := range steps {
		if s.cmd == "" {
			b.WriteString(s.text + "\n")
			continue
		}
		b.WriteString(s.cmd)
		if s.worker != "" {
			b.WriteString(" " + s.worker)
		}
		for _, a := range s.args {
			b.WriteString(" " + a.k + "=" + a.v)
		}
		b.WriteString("\n")
		for _, w := range s.want {
			if w == "" {
				b.WriteString(">\n")
			} else {
				b.WriteString("> " + w + "\n")
			}
		}
	}
	return b.String()
}

// runner replays a transcript against the package.
type runner struct {
	cfg     Config
	task    *Task
	reps    Reputations
	carries Carries
}

func (s step) str(k, def string) string {
	if v, ok := s.get(k); ok {
		return v
	}
	return def
}

func (s step) int(k string, def int) int {
	if v, ok := s.get(k); ok {
		n, _ := strconv.Atoi(v)
		return n
	}
	return def
}

func (s step) amount(k string) protocol.Micros {
	m, _ := protocol.ParseAmount(s.str(k, "0"))
	return m
}

func (s step) speed(k string, def protocol.Speed) protocol.Speed {
	if v, ok := s.get(k); ok {
		sp, _ := protocol.ParseSpeed(v)
		return sp
	}
	return def
}

func (s step) dur(k string) time.Duration {
	d, _ := time.ParseDuration(s.str(k, "0s"))
	return d
}

func (s step) ms(k string) int64 { return s.dur(k).Milliseconds() }

// parseWork reads work as standard time (a duration: what speed 1.0 does
// in it) or as units ("1234u").
func parseWork(v string) (uint64, error) {
	if u, ok := strings.CutSuffix(v, "u"); ok {
		return strconv.ParseUint(u, 10, 64)
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("work %q is neither a duration nor units", v)
	}
	return MaxWork(d.Microseconds()), nil
}

func (s step) work(k string) uint64 {
	w, _ := parseWork(s.str(k, "0u"))
	return w
}

// fmtWork shows work as units and as standard time.
func fmtWork(w uint64) string {
	return fmt.Sprintf("%du(%s)", w, dur(int64(w/uint64(protocol.SpeedUnit))))
}

func dur(micros int64) string { return (time.Duration(micros) * time.Microsecond).String() }

func (r *runner) exec(s step) []string {
	out, err := r.do(s)
	if err != nil {
		out = append(out, "error: "+err.Error())
	}
	return out
}

func (r *runner) do(s step) ([]string, error) {
	if r.reps == nil {
		r.reps = Reputations{}
	}
	if r.carries == nil {
		r.carries = Carries{}
	}
	if s.cmd != "config" && s.cmd != "task" && s.cmd != "rating" && s.cmd != "seen" && s.cmd != "observe" &&
		s.cmd != "carries" && r.task == nil {
		return nil, errors.New("no task yet")
	}
	t := r.task
	switch s.cmd {
	case "config":
		c := r.cfg
		for _, a := range s.args {
			switch a.k {
			case "tol":
				c.SpeedTolerancePPM, _ = parsePercent(a.v)
			case "spot":
				c.SpotCheckPPM, _ = parsePercent(a.v)
			case "cut":
				c.OperatorCutPPM, _ = parsePercent(a.v)
			case "maxrun":
				c.MaxRunTime = s.dur("maxrun")
			case "heartbeat":
				c.HeartbeatTimeout = s.dur("heartbeat")
			case "slack":
				c.DeadlineSlack = s.dur("slack")
			case "speedslack":
				c.SpeedSlack = s.dur("speedslack")
			case "extra":
				c.MaxExtraReplicas = s.int("extra", 0)
			case "maxreplicas":
				c.MaxReplicas = s.int("maxreplicas", 0)
			case "strikes":
				c.StrikesToExclude = s.int("strikes", 0)
			case "tiebreak":
				c.VerifierTiebreak = a.v == "verifier"
			case "prior":
				c.RatingPrior = s.int("prior", 0)
			case "minrated":
				c.MinRatedSpeed = s.speed("minrated", 0)
			case "maxspeed":
				c.MaxSpeed = s.speed("maxspeed", 0)
			}
		}
		if err := c.Validate(); err != nil {
			return nil, err
		}
		r.cfg = c
		return nil, nil
	case "task":
		bid := Bid{Consumer: s.str("consumer", "C"), Group: s.str("group", "g"), MaxPrice: s.amount("max"),
			MinSpeed: s.speed("minspeed", 0), Replicas: s.int("replicas", 2)}
		nt, err := NewTask(bid, s.int("index", 0), r.cfg)
		if err != nil {
			return nil, err
		}
		r.task = nt
		return []string{fmt.Sprintf("escrowed=%s (%d × %s)", nt.Escrowed, nt.EscrowSlots, nt.ReplicaEscrow())}, nil
	case "assign":
		top, err := t.Assign(Match{Worker: s.worker, Owner: s.str("owner", ""), Price: s.amount("price"),
			Speed: s.speed("speed", protocol.SpeedUnit)}, s.ms("at"))
		if err != nil {
			return nil, err
		}
		if top > 0 {
			return []string{fmt.Sprintf("ok, escrow top-up %s (escrowed %s)", top, t.Escrowed)}, nil
		}
		return []string{"ok"}, nil
	case "heartbeat":
		return nil, t.Heartbeat(s.worker, s.ms("at"))
	case "receipt":
		stopped, _ := strconv.ParseBool(s.str("stopped", "false"))
		return nil, t.Receipt(s.worker, Receipt{ResultCID: s.str("result", ""), ExitCode: int32(s.int("exit", 0)),
			Work: s.work("work"), ExecMicros: s.dur("time").Microseconds(), WindowMicros: s.dur("window").Microseconds(),
			SlotMicros: s.dur("slot").Microseconds(), Stopped: stopped}, s.ms("at"))
	case "fail":
		return nil, t.Fail(s.worker, s.str("reason", "failed"))
	case "sweep":
		var out []string
		for _, d := range t.Sweep(s.ms("at"), r.cfg) {
			out = append(out, fmt.Sprintf("dropped %s %s: %s", d.Worker, d.State, d.Reason))
		}
		if out == nil {
			out = []string{"nothing dropped"}
		}
		return out, nil
	case "spotcheck":
		seed := uint64(s.int("seed", 0))
		if !SpotCheck(r.cfg, rand.New(rand.NewPCG(seed, seed))) {
			return []string{"not checked"}, nil
		}
		return []string{"spot-checked"}, t.RequestVerifier()
	case "verify":
		return nil, t.RequestVerifier()
	case "verifier":
		stopped, _ := strconv.ParseBool(s.str("stopped", "false"))
		return nil, t.VerifierResult(VerifierRun{ResultCID: s.str("result", ""), ExitCode: int32(s.int("exit", 0)),
			Work: s.work("work"), ExecMicros: s.dur("time").Microseconds(), Speed: s.speed("speed", protocol.SpeedUnit), Stopped: stopped})
	case "abort":
		return nil, t.Abort(s.str("reason", ""))
	case "decide":
		return formatDecision(t.Decide()), nil
	case "settle":
		st, err := t.Settle(r.carries)
		if err != nil {
			return nil, err
		}
		r.reps.ObserveAll(st.Decision, r.cfg)
		return formatSettlement(st), nil
	case "seen":
		r.reps.Get(s.worker).Seen(s.ms("at"), r.cfg)
		return nil, nil
	case "observe":
		rep := r.reps.Get(s.worker)
		rep.ObserveSpeed(s.work("work"), s.dur("slot").Microseconds(), r.cfg)
		sp, _ := rep.RatedSpeed(r.cfg)
		return []string{fmt.Sprintf("%s rated speed=%s (work %d over %s)", s.worker, sp, rep.SpeedWork, dur(int64(rep.SpeedMicros)))}, nil
	case "carries":
		keys := slices.Sorted(maps.Keys(r.carries))
		out := []string{fmt.Sprintf("%d pair(s) carried", len(keys))}
		for _, k := range keys {
			c, p, _ := strings.Cut(k, "\x00")
			out = append(out, fmt.Sprintf("  %s→%s %d picos", c, p, r.carries[k]))
		}
		return out, nil
	case "rating":
		rep := r.reps.Get(s.worker)
		mttf := "none"
		if ms, ok := rep.MTTF(); ok {
			mttf = (time.Duration(ms) * time.Millisecond).String()
		}
		rated := "none"
		if sp, ok := rep.RatedSpeed(r.cfg); ok {
			rated = sp.String()
		}
		return []string{fmt.Sprintf("%s rating=%d strikes=%d failures=%d speed=%d/%d mttf=%s struck-out=%v rated-speed=%s",
			s.worker, rep.Rating(r.cfg), rep.Strikes, rep.Failures, rep.SpeedChecks-rep.SpeedMisses,
			rep.SpeedChecks, mttf, rep.StruckOut(r.cfg), rated)}, nil
	}
	return nil, fmt.Errorf("unknown command %q", s.cmd)
}

func formatDecision(d Decision) []string {
	var out []string
	switch d.Kind {
	case DecisionWait:
		return []string{"wait: " + d.Reason}
	case DecisionNeed:
		if d.Verifier {
			return []string{"need verifier run: " + d.Reason}
		}
		return []string{fmt.Sprintf("need %d replica(s): %s", d.Need, d.Reason)}
	case DecisionVerified:
		by := "by=workers"
		if d.Trusted {
			by = "by=verifier"
		}
		out = append(out, fmt.Sprintf("verified result=%s exit=%d work=%s %s", d.Result, d.ExitCode, fmtWork(d.Work), by))
	case DecisionFailed:
		out = append(out, "failed: "+d.Reason)
	}
	for _, v := range d.Verdicts {
		line := fmt.Sprintf("  %s %s", v.Worker, v.Outcome)
		if v.Work != 0 || v.Outcome == OutcomePaid || v.Outcome == OutcomeTooSlow || v.Outcome == OutcomeWrong {
			line += " work=" + fmtWork(v.Work)
		}
		if v.EffectiveSpeed != 0 {
			line += " speed=" + v.EffectiveSpeed.String()
		}
		if v.Outcome == OutcomePaid {
			line += " billed=" + dur(v.BilledMicros)
		}
		if v.Strike {
			line += " strike"
		}
		out = append(out, line)
	}
	return out
}

func formatSettlement(s Settlement) []string {
	out := []string{fmt.Sprintf("%s: escrowed=%s charged=%s cut=%s refund=%s", s.Decision.Kind,
		s.Escrowed, s.Charged, s.OperatorCut, s.Refund)}
	for _, p := range s.Payouts {
		out = append(out, fmt.Sprintf("  pay %s %s/h at speed %s × %s: exact=%dp charge=%s cut=%s pay=%s", p.Worker, p.Price,
			p.Speed, dur(p.BilledMicros), p.Exact, p.Charge, p.Cut, p.Pay))
	}
	return out
}

func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			steps, err := parseTranscript(string(src))
			if err != nil {
				t.Fatal(err)
			}
			r := &runner{cfg: DefaultConfig()}
			checked := 0
			for i := range steps {
				s := &steps[i]
				if s.cmd == "" {
					continue
				}
				got := r.exec(*s)
				if *update {
					s.want = got
					continue
				}
				if strings.Join(got, "\n") != strings.Join(s.want, "\n") {
					t.Errorf("line %d: %s %s\n got:\n> %s\nwant:\n> %s", s.line, s.cmd, s.worker,
						strings.Join(got, "\n> "), strings.Join(s.want, "\n> "))
				}
				checked += len(s.want)
			}
			if *update {
				if err := os.WriteFile(f, []byte(formatTranscript(steps)), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if checked == 0 {
				t.Errorf("transcript checks no output")
			}
		})
	}
}

func FuzzParseTranscript(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("task max=1 replicas=2\nassign W1 price=0.5 speed=0.25 at=1m\n> ok\n")
	f.Add("config tol=15.5% tiebreak=worker\n>\n")
	f.Add("receipt W1 result=x exit=1 time=2h stopped=true\nsettle\n> x\n")
	f.Add("verifier result=x time=1m speed=0.5\nsweep at=3m\n# c\n\nspotcheck seed=4\n")
	f.Fuzz(func(t *testing.T, src string) {
		steps, err := parseTranscript(src)
		if err != nil {
			return
		}
		// Canonical form is a fixed point: format ∘ parse ∘ format = format.
		canon := formatTranscript(steps)
		again, err := parseTranscript(canon)
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%s", err, canon)
		}
		if got := formatTranscript(again); got != canon {
			t.Fatalf("round trip differs:\n%q\n%q", canon, got)
		}
		if len(again) != len(steps) {
			t.Fatalf("round trip has %d steps, want %d", len(again), len(steps))
		}
		// Replaying any parsed transcript never panics.
		r := &runner{cfg: DefaultConfig()}
		for _, s := range again {
			if s.cmd != "" {
				r.exec(s)
			}
		}
	})
}
