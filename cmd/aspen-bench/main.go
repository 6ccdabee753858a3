// Command aspen-bench runs Aspen's performance suite: each figure of the
// performance issue with its baseline measured in the same run, printed
// as a table (figure | value | baseline | ratio | target | met?) and
// optionally written as JSON. BENCHMARKS.md records a run.
//
//	go run ./cmd/aspen-bench                  # everything (< 10 min on 2 cores)
//	go run ./cmd/aspen-bench --only 3,4 --json out.json
//
// It is a separate command (not "aspen-node bench") so that the node
// binary carries no benchmark code: mocknet, fake workers, the in-process
// devnet and the wasm assembler live only here.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aspen-market/aspen/sandbox"
)

// figure is one numbered figure of the suite.
type figure struct {
	n     int
	title string
	run   func(ctx context.Context, e *env) ([]Row, error)
}

var figures = []figure{
	{1, "sandbox vs native", figSandbox},
	{2, "start-up per task", figStartup},
	{3, "end-to-end latency", figLatency},
	{4, "throughput", figThroughput},
	{5, "blob transfer", figBlob},
	{6, "gossip", figGossip},
	{7, "ledger", figLedger},
	{8, "memory", figMemory},
	{9, "metered work", figMetering},
}

// env is what figures share: flags, a scratch directory, a logger.
type env struct {
	dir     string // scratch root, removed at exit
	cache   string // compiled-module cache shared by every sandbox of the run
	log     *slog.Logger
	quick   bool
	nodeBin string
	verbose io.Writer
	// queueDepth overrides the devnet verifiers' QueueDepth (experiments).
	queueDepth int
}

func main() {
	sandbox.RunChildIfRequested() // re-executed as a sandbox executor child
	if len(os.Args) > 1 && os.Args[1] == childVerifierMem {
		os.Exit(runVerifierMemChild(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == childBareCompile {
		os.Exit(runBareCompileChild(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aspen-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "comma-separated figure numbers to run (default: all), e.g. 3,4")
	jsonOut := fs.String("json", "", "also write the results as JSON to this file")
	quick := fs.Bool("quick", false, "fewer repetitions (a smoke test; figures are noisier)")
	nodeBin := fs.String("node-bin", "", "aspen-node binary for the idle-worker memory figure (default: beside this binary, else built with 'go build')")
	cpuProf := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	keep := fs.Bool("keep", false, "keep the scratch directory")
	scratch := fs.String("dir", "", "parent of the scratch directory holding every store (default: the system temporary directory); put it on tmpfs (/dev/shm) to take the disk's fsync latency out of the figures")
	verbose := fs.Bool("v", false, "log the nodes' and verifier's decisions to stderr (debug level, µs timestamps)")
	queueDepth := fs.Int("queue-depth", 0, "verifier QueueDepth in the devnets of figures 3 and 4 (0: the verifier's default)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: aspen-bench [--only N,M] [--json FILE] [--dir DIR] [--quick] [--node-bin PATH] [--cpuprofile FILE]")
		fmt.Fprintln(stderr, "\nfigures:")
		for _, f := range figures {
			fmt.Fprintf(stderr, "  %d  %s\n", f.n, f.title)
		}
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	selected, err := parseOnly(*only)
	if err != nil {
		fmt.Fprintln(stderr, "aspen-bench:", err)
		return 2
	}
	dir, err := os.MkdirTemp(*scratch, "aspen-bench-")
	if err != nil {
		fmt.Fprintln(stderr, "aspen-bench:", err)
		return 1
	}
	if !*keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintln(stderr, "scratch directory:", dir)
	}
	logOut := io.Discard
	if *verbose {
		logOut = stderr
	}
	e := &env{
		dir:   dir,
		cache: filepath.Join(dir, "wasm-cache"),
		log: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey { // microseconds: the latency figures read the logs
					a.Value = slog.StringValue(a.Value.Time().Format("15:04:05.000000"))
				}
				return a
			}})),
		quick:      *quick,
		nodeBin:    *nodeBin,
		verbose:    logOut,
		queueDepth: *queueDepth,
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			fmt.Fprintln(stderr, "aspen-bench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "aspen-bench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	rep := report{Machine: machineInfo(), Started: time.Now().UTC().Format(time.RFC3339)}
	fmt.Fprintf(stdout, "aspen-bench: %s\n\n", rep.Machine)
	start := time.Now()
	failed := 0
	for _, f := range figures {
		if selected != nil && !selected[f.n] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		load0 := loadAvg()
		fmt.Fprintf(stderr, "[%s] figure %d: %s (load %s)\n", time.Since(start).Round(time.Second), f.n, f.title, load0)
		t0 := time.Now()
		var rows []Row
		// Profile samples carry the figure (go tool pprof -tagfocus figure=N);
		// goroutines started by the figure's nodes inherit the label.
		pprof.Do(ctx, pprof.Labels("figure", strconv.Itoa(f.n)), func(ctx context.Context) {
			rows, err = f.run(ctx, e)
		})
		fr := figureReport{N: f.n, Title: f.title, Seconds: time.Since(t0).Seconds(), LoadBefore: load0, LoadAfter: loadAvg(), Rows: rows}
		if err != nil {
			fr.Error = err.Error()
			failed++
			fmt.Fprintf(stderr, "figure %d failed: %v\n", f.n, err)
		}
		for i := range fr.Rows {
			fr.Rows[i].finish()
		}
		rep.Figures = append(rep.Figures, fr)
		printRows(stderr, fr.Rows) // progress: the rows as they come
	}
	rep.Seconds = time.Since(start).Seconds()
	fmt.Fprintln(stdout)
	printTable(stdout, rep)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(stderr, "aspen-bench:", err)
			return 1
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func parseOnly(s string) (map[int]bool, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[int]bool{}
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > len(figures) {
			return nil, fmt.Errorf("--only: %q is not a figure number (1..%d)", p, len(figures))
		}
		out[n] = true
	}
	return out, nil
}

// ---- results ----

// Row is one line of the table. A target applies to Value ("value") or
// to Ratio ("ratio"), with "<=" or ">=".
type Row struct {
	Figure    string   `json:"figure"`
	Value     float64  `json:"value"`
	Unit      string   `json:"unit"`
	Baseline  *float64 `json:"baseline,omitempty"`
	BaseUnit  string   `json:"baseline_unit,omitempty"`
	BaseWhat  string   `json:"baseline_what,omitempty"`
	Ratio     *float64 `json:"ratio,omitempty"`
	TargetOn  string   `json:"target_on,omitempty"` // "value" or "ratio"; "" = no target (reference row)
	TargetOp  string   `json:"target_op,omitempty"` // "<=" or ">="
	TargetVal float64  `json:"target,omitempty"`
	Met       *bool    `json:"met,omitempty"`
	Note      string   `json:"note,omitempty"`
}

func ptr(f float64) *float64 { return &f }

// withBaseline sets the baseline and the ratio value/baseline.
func (r Row) withBaseline(b float64, unit, what string) Row {
	r.Baseline, r.BaseUnit, r.BaseWhat = ptr(b), unit, what
	if b != 0 {
		r.Ratio = ptr(r.Value / b)
	}
	return r
}

func (r Row) target(on, op string, v float64) Row {
	r.TargetOn, r.TargetOp, r.TargetVal = on, op, v
	return r
}

func (r Row) note(format string, a ...any) Row {
	if r.Note != "" {
		r.Note += "; "
	}
	r.Note += fmt.Sprintf(format, a...)
	return r
}

func (r *Row) finish() {
	if r.TargetOn == "" {
		return
	}
	x := r.Value
	if r.TargetOn == "ratio" {
		if r.Ratio == nil {
			return
		}
		x = *r.Ratio
	}
	met := x <= r.TargetVal
	if r.TargetOp == ">=" {
		met = x >= r.TargetVal
	}
	r.Met = &met
}

type figureReport struct {
	N          int     `json:"n"`
	Title      string  `json:"title"`
	Seconds    float64 `json:"seconds"`
	LoadBefore string  `json:"load_before"`
	LoadAfter  string  `json:"load_after"`
	Rows       []Row   `json:"rows"`
	Error      string  `json:"error,omitempty"`
}

type report struct {
	Machine string         `json:"machine"`
	Started string         `json:"started"`
	Seconds float64        `json:"seconds"`
	Figures []figureReport `json:"figures"`
}

func fmtNum(v float64, unit string) string {
	var s string
	switch a := abs(v); {
	case a == 0:
		s = "0"
	case a >= 100:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(v, 'g', 3, 64)
	}
	if unit == "" {
		return s
	}
	if unit == "×" || unit == "%" {
		return s + unit
	}
	return s + " " + unit
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func (r Row) cells() []string {
	val := fmtNum(r.Value, r.Unit)
	base, ratio, target, met := "—", "—", "—", "—"
	if r.Baseline != nil {
		base = fmtNum(*r.Baseline, r.BaseUnit)
		if r.BaseWhat != "" {
			base += " (" + r.BaseWhat + ")"
		}
	}
	if r.Ratio != nil {
		ratio = fmtNum(*r.Ratio, "×")
	}
	if r.TargetOn != "" {
		op := map[string]string{"<=": "≤", ">=": "≥"}[r.TargetOp]
		if r.TargetOn == "ratio" {
			target = op + " " + fmtNum(r.TargetVal, "×")
		} else {
			target = op + " " + fmtNum(r.TargetVal, r.Unit)
		}
	}
	if r.Met != nil {
		met = "yes"
		if !*r.Met {
			met = "**no**"
		}
	}
	return []string{r.Figure, val, base, ratio, target, met}
}

func printRows(w io.Writer, rows []Row) {
	for _, r := range rows {
		c := r.cells()
		fmt.Fprintf(w, "  %s: %s | baseline %s | ratio %s | target %s | met %s", c[0], c[1], c[2], c[3], c[4], c[5])
		if r.Note != "" {
			fmt.Fprintf(w, " | %s", r.Note)
		}
		fmt.Fprintln(w)
	}
}

// printTable writes the results as a Markdown table.
func printTable(w io.Writer, rep report) {
	fmt.Fprintf(w, "machine: %s\nstarted: %s, took %.0f s\n\n", rep.Machine, rep.Started, rep.Seconds)
	fmt.Fprintln(w, "| figure | value | baseline | ratio | target | met? |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	var notes []string
	for _, f := range rep.Figures {
		for _, r := range f.Rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(r.cells(), " | "))
			if r.Note != "" {
				notes = append(notes, fmt.Sprintf("- %s: %s", r.Figure, r.Note))
			}
		}
		if f.Error != "" {
			fmt.Fprintf(w, "| %d %s | error: %s | | | | **no** |\n", f.N, f.Title, strings.ReplaceAll(f.Error, "|", "/"))
		}
	}
	fmt.Fprintln(w)
	for _, f := range rep.Figures {
		fmt.Fprintf(w, "- figure %d took %.0f s; load average before %s, after %s\n", f.N, f.Seconds, f.LoadBefore, f.LoadAfter)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
}

// ---- machine ----

func machineInfo() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if i := strings.Index(line, ":"); i >= 0 {
					model = strings.TrimSpace(line[i+1:])
				}
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				f := strings.Fields(line)
				if len(f) >= 2 {
					if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
						mem = fmt.Sprintf("%.1f GiB", kb/(1<<20))
					}
				}
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s RAM, %s %s/%s", runtime.NumCPU(), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// loadAvg is /proc/loadavg's three load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
