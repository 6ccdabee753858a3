package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/protocol"
)

func init() {
	register("map", command{summary: "run a wasm module on many inputs through the market, results in order", run: cmdMap})
}

const mapUsage = `usage: aspen-node map MODULE.wasm [INPUT_FILES... | --inputs FILE.jsonl | --lines FILE]
                      --max-price P [--min-speed S] [--replicas 2] [--timeout D] [--max-memory SIZE]
                      [--out DIR] [--name NAME] [--quiet | --progress] [--api URL] [--token T] [--data DIR]

Runs MODULE.wasm once per input, each on at least two workers, and writes the
verified results in input order: each result's stdout to stdout, or with
--out DIR one file per input (NNNNNN.out, plus NNNNNN.err for failures).
Per-input errors (traps, non-zero exits, refused tasks) go to stderr with the
job's own stderr. Ctrl-C cancels the unfinished inputs (their escrow is
refunded) and exits 130. Exit status 1 when any input failed, 2 for usage.

Inputs: each INPUT_FILE's bytes is one input; --inputs FILE.jsonl has one
input per line, a JSON string (the input as text) or {"data": "<base64>"} or
{"text": "..."}; --lines FILE makes each line of FILE (without its newline)
one input. FILE may be - for stdin.

flags:
`

// defaultMapTimeout is map's running time limit per job: long enough for
// typical jobs (seconds to minutes), short enough that the escrow held per
// task (replicas × max price × timeout) stays small. The node's API default
// is the verifier's maximum, 2h.
const defaultMapTimeout = 10 * time.Minute

func cmdMap(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("map", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af apiFlags
	af.register(fs)
	var (
		maxPrice   = fs.String("max-price", os.Getenv("ASPEN_MAX_PRICE"), "maximum price per hour of a worker's machine, e.g. 0.04 (required; env ASPEN_MAX_PRICE)")
		minSpeed   = fs.String("min-speed", os.Getenv("ASPEN_MIN_SPEED"), "minimum worker speed, 1.0 = the verifier's reference machine; machines like it rate slightly above or below 1.0 (default any: every worker is still held to its own rated speed; env ASPEN_MIN_SPEED)")
		replicas   = fs.Int("replicas", 2, "workers per input (at least 2)")
		timeout    = fs.Duration("timeout", defaultMapTimeout, "running time limit per job, e.g. 30s or 2h; the escrow held per task is replicas × max price × this")
		maxMemory  = fs.String("max-memory", "", "memory cap per job, e.g. 256MiB (default the node's)")
		inputsFile = fs.String("inputs", "", "JSON lines file of inputs (- for stdin)")
		linesFile  = fs.String("lines", "", "file whose every line is one input (- for stdin)")
		outDir     = fs.String("out", "", "write NNNNNN.out / NNNNNN.err per input into `DIR` instead of stdout")
		name       = fs.String("name", "", "a label for the job group")
		quiet      = fs.Bool("quiet", false, "no progress or summary on stderr (per-input errors are still reported)")
		bar        = fs.Bool("progress", false, "draw the progress bar even when stderr is not a terminal")
	)
	fs.Usage = func() { fmt.Fprint(stderr, mapUsage); fs.PrintDefaults() }
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "aspen-node map: "+format+"\n(see aspen-node map -h)\n", a...)
		return 2
	}
	if len(pos) == 0 {
		return usageErr("missing MODULE.wasm")
	}
	opts := client.MapOptions{Name: *name, Replicas: *replicas, Timeout: *timeout}
	var err error
	if *maxPrice == "" {
		return usageErr("--max-price is required (the most you pay per hour of a worker's machine, e.g. 0.04)")
	}
	if opts.MaxPrice, err = protocol.ParseAmount(*maxPrice); err != nil || opts.MaxPrice == 0 {
		return usageErr("--max-price %q: want a positive decimal amount like 0.04", *maxPrice)
	}
	if *minSpeed != "" {
		if opts.MinSpeed, err = protocol.ParseSpeed(*minSpeed); err != nil {
			return usageErr("--min-speed %q: want a decimal speed like 1.0", *minSpeed)
		}
	}
	if *replicas < 2 {
		return usageErr("--replicas must be at least 2 (every job runs on at least two workers)")
	}
	if *timeout < 0 {
		return usageErr("--timeout must be positive")
	}
	if *maxMemory != "" {
		if opts.MaxMemory, err = parseSize(*maxMemory); err != nil {
			return usageErr("--max-memory: %v", err)
		}
	}
	sources := 0
	for _, set := range []bool{len(pos) > 1, *inputsFile != "", *linesFile != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return usageErr("give the inputs as INPUT_FILES, --inputs FILE.jsonl or --lines FILE (exactly one of them)")
	}

	module, err := os.ReadFile(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node map: module: %v\n", err)
		return 1
	}
	var inputs [][]byte
	switch {
	case *inputsFile != "":
		inputs, err = readInputsFile(*inputsFile, stdin, readJSONLInputs)
	case *linesFile != "":
		inputs, err = readInputsFile(*linesFile, stdin, readLineInputs)
	default:
		for _, p := range pos[1:] {
			b, rerr := os.ReadFile(p)
			if rerr != nil {
				err = rerr
				break
			}
			inputs = append(inputs, b)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node map: inputs: %v\n", err)
		return 1
	}
	if len(inputs) == 0 {
		fmt.Fprintln(stderr, "aspen-node map: no inputs")
		return 1
	}
	c, err := af.client()
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node map: %v\n", err)
		return 1
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	st := newStatus(stderr, "map", *quiet, *bar)
	em, err := newEmitter(stdout, stderr, *outDir, len(inputs), st, stop)
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node map: %v\n", err)
		return 1
	}
	em.cancels = true
	opts.Progress = st.update
	mapErr := c.MapStream(ctx, module, inputs, opts, em.add)
	return em.finish(mapErr)
}

// readInputsFile opens path ("-" for stdin) and parses it with parse.
func readInputsFile(path string, stdin io.Reader, parse func(io.Reader) ([][]byte, error)) ([][]byte, error) {
	if path == "-" {
		return parse(stdin)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	in, err := parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return in, nil
}

// eachLine calls fn with every line of r, without its "\n" or "\r\n". A
// last line without a newline counts; nothing after a final newline does.
func eachLine(r io.Reader, fn func(n int, line []byte) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if ferr := fn(n, line); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readLineInputs makes every line one input (an empty line is an empty
// input).
func readLineInputs(r io.Reader) ([][]byte, error) {
	var out [][]byte
	err := eachLine(r, func(_ int, line []byte) error {
		out = append(out, bytes.Clone(line))
		return nil
	})
	return out, err
}

// readJSONLInputs reads one input per line: a JSON string (the input as
// text), {"data": "<base64>"} or {"text": "..."}. Blank lines are skipped.
func readJSONLInputs(r io.Reader) ([][]byte, error) {
	var out [][]byte
	err := eachLine(r, func(n int, line []byte) error {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			return nil
		}
		if line[0] == '"' {
			var s string
			if err := json.Unmarshal(line, &s); err != nil {
				return fmt.Errorf("line %d: %v", n, err)
			}
			out = append(out, []byte(s))
			return nil
		}
		var obj struct {
			Data *string `json:"data"`
			Text *string `json:"text"`
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&obj); err != nil {
			return fmt.Errorf("line %d: want a JSON string, {\"data\": BASE64} or {\"text\": TEXT}: %v", n, err)
		}
		switch {
		case obj.Data != nil && obj.Text != nil:
			return fmt.Errorf("line %d: both data and text", n)
		case obj.Data != nil:
			b, err := base64.StdEncoding.DecodeString(*obj.Data)
			if err != nil {
				return fmt.Errorf("line %d: data is not base64: %v", n, err)
			}
			out = append(out, b)
		case obj.Text != nil:
			out = append(out, []byte(*obj.Text))
		default:
			return fmt.Errorf("line %d: want a JSON string, {\"data\": BASE64} or {\"text\": TEXT}", n)
		}
		return nil
	})
	return out, err
}

// apiFlags locate the node's API: --api, --token, --data.
type apiFlags struct{ api, token, data string }

func (a *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.api, "api", "", "the node's API `URL` (default $ASPEN_API, else DIR/api.addr)")
	fs.StringVar(&a.token, "token", "", "the API token (default $ASPEN_TOKEN, else DIR/api.token)")
	fs.StringVar(&a.data, "data", client.DefaultDataDir(), "the node's data `DIR` (env ASPEN_DATA)")
}

func (a *apiFlags) client() (*client.Client, error) { return client.Connect(a.api, a.token, a.data) }

// parseArgs parses flags given before, between and after positional
// arguments ("--" ends the flags). It returns the positional arguments, and
// an exit code >= 0 when the command should stop (help: 0, bad flags: 2).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, int) {
	var pos, rest []string
	for i, a := range args {
		if a == "--" {
			args, rest = args[:i], args[i+1:]
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0
			}
			return nil, 2
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return append(pos, rest...), -1
}

// emitter writes results as they arrive: in input order to stdout (holding
// back those that arrive early), or one file each into an output directory;
// and reports per-input errors on stderr.
type emitter struct {
	stdout, stderr io.Writer
	outDir         string
	total          int
	abort          func() // stops the map (a write failed)
	status         *status
	cancels        bool // canceling the context cancels the group (map), or only stops waiting (results)

	next     int                    // stdout: the next index to write
	held     map[int]*client.Result // stdout: results waiting for an earlier one
	got      int
	failed   int
	reported int
	same     map[string]int // failures the verifier gave the same reason for, by reason
	writeErr error
}

// Failure reports on stderr: the first maxDetailed with an excerpt of the
// job's stderr, up to maxReported with one line each, then only a count.
const (
	maxDetailed    = 10
	maxReported    = 50
	maxExcerptLine = 5
)

func newEmitter(stdout, stderr io.Writer, outDir string, total int, st *status, abort func()) (*emitter, error) {
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
	}
	return &emitter{stdout: stdout, stderr: stderr, outDir: outDir, total: total, abort: abort,
		held: map[int]*client.Result{}, same: map[string]int{}, status: st}, nil
}

func (e *emitter) add(r client.Result) {
	e.got++
	if r.Err != nil {
		e.failed++
		e.report(r)
	}
	if e.writeErr != nil {
		return
	}
	if e.outDir != "" {
		e.fail(writeOutFiles(e.outDir, r))
		return
	}
	e.held[r.Index] = &r
	for {
		h := e.held[e.next]
		if h == nil {
			return
		}
		delete(e.held, e.next)
		e.next++
		if len(h.Stdout) > 0 {
			if _, err := e.stdout.Write(h.Stdout); err != nil {
				e.fail(fmt.Errorf("writing results: %w", err))
				return
			}
		}
	}
}

func (e *emitter) fail(err error) {
	if err != nil && e.writeErr == nil {
		e.writeErr = err
		e.abort()
	}
}

// writeOutFiles writes DIR/NNNNNN.out (the job's stdout, when it ran) and,
// for a failure, DIR/NNNNNN.err: the error line, then the job's stderr.
func writeOutFiles(dir string, r client.Result) error {
	base := filepath.Join(dir, fmt.Sprintf("%06d", r.Index))
	if r.Status != "" {
		if err := os.WriteFile(base+".out", r.Stdout, 0o644); err != nil {
			return err
		}
	}
	if r.Err != nil {
		b := append([]byte(r.Err.Error()+"\n"), r.Stderr...)
		if err := os.WriteFile(base+".err", b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// report writes one failure to stderr. Tasks the verifier failed or that
// were canceled for the same reason (e.g. "insufficient funds") are shown
// once and counted.
func (e *emitter) report(r client.Result) {
	var te *client.TaskError
	if errors.As(r.Err, &te) && (te.State == client.StateFailed || te.State == client.StateCanceled) {
		key := te.State + ": " + te.Reason
		e.same[key]++
		if e.same[key] > 1 {
			return
		}
	}
	e.reported++
	if e.reported > maxReported {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s%v\n", e.status.prefix, r.Err)
	if e.reported <= maxDetailed && !e.status.quiet {
		detail := r.Stderr
		if len(bytes.TrimSpace(detail)) == 0 {
			detail = []byte(r.Message)
		}
		lines := strings.Split(strings.TrimRight(strings.ToValidUTF8(string(detail), "\uFFFD"), "\n"), "\n")
		for i, l := range lines {
			if l == "" && i == 0 {
				continue
			}
			if i == maxExcerptLine {
				fmt.Fprintf(&b, "    | … (%d more lines)\n", len(lines)-i)
				break
			}
			fmt.Fprintf(&b, "    | %s\n", l)
		}
	}
	if e.reported == maxReported {
		where := "use --out DIR to keep every error"
		if e.outDir != "" {
			where = "see the .err files in " + e.outDir
		}
		fmt.Fprintf(&b, "%sfurther failures are counted, not shown (%s)\n", e.status.prefix, where)
	}
	e.status.print(b.String())
}

// finish reports how the map ended and returns the exit status.
func (e *emitter) finish(mapErr error) int {
	e.status.done()
	p := e.status.prefix
	switch {
	case e.writeErr != nil:
		fmt.Fprintf(e.stderr, "%s%v\n", p, e.writeErr)
		if e.cancels {
			fmt.Fprintf(e.stderr, "%sthe unfinished inputs were canceled\n", p)
		}
		return 1
	case errors.Is(mapErr, context.Canceled) || errors.Is(mapErr, context.DeadlineExceeded):
		msg := fmt.Sprintf("interrupted with %d of %d inputs finished", e.got, e.total)
		if e.cancels {
			msg += "; the rest were canceled and their escrow refunded"
		} else {
			msg += "; the group keeps running"
		}
		fmt.Fprintf(e.stderr, "%s%s\n", p, msg)
		if len(e.held) > 0 {
			fmt.Fprintf(e.stderr, "%s%d finished results after the first unfinished input were not written (use --out DIR to keep every result)\n", p, len(e.held))
		}
		// The cancel request itself may have failed: say so.
		if subs := unjoin(mapErr); len(subs) > 1 {
			for _, sub := range subs[1:] {
				fmt.Fprintf(e.stderr, "%s%v\n", p, sub)
			}
		}
		return 130
	case mapErr != nil:
		fmt.Fprintf(e.stderr, "%s%v\n", p, mapErr)
		if e.got == 0 {
			return 1
		}
	}
	keys := make([]string, 0, len(e.same))
	for k, n := range e.same {
		if n > 1 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(e.stderr, "%s%d more inputs %s\n", p, e.same[k]-1, k)
	}
	if !e.status.quiet {
		unfinished := e.total - e.got
		msg := fmt.Sprintf("%d inputs: %d ok, %d failed", e.total, e.got-e.failed, e.failed)
		if unfinished > 0 {
			msg += fmt.Sprintf(", %d unfinished", unfinished)
		}
		if e.status.seen {
			msg += fmt.Sprintf("; spent %s in %s", e.status.last.Spent, roundDur(e.status.last.Elapsed))
		}
		fmt.Fprintf(e.stderr, "%s%s\n", p, msg)
	}
	if e.failed > 0 || e.got < e.total || mapErr != nil {
		return 1
	}
	return 0
}

// unjoin returns the errors joined in err (or err itself).
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// status draws progress on stderr: a bar redrawn in place on a terminal
// (or with --progress), else a line every few seconds.
type status struct {
	w       io.Writer
	prefix  string // "aspen-node COMMAND: "
	seen    bool   // update was called
	hide    bool   // no progress display (but failures and the summary)
	quiet   bool
	bar     bool
	shown   bool // a bar is on screen
	header  bool
	lastOut time.Time
	last    client.Progress
	now     func() time.Time
}

const (
	barRedraw = 100 * time.Millisecond
	lineEvery = 5 * time.Second
	barWidth  = 30
	clearLine = "\r\x1b[K"
)

func newStatus(w io.Writer, command string, quiet, forceBar bool) *status {
	return &status{w: w, prefix: "aspen-node " + command + ": ", quiet: quiet, bar: forceBar || isTerminal(w), now: time.Now}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (s *status) update(p client.Progress) {
	s.last, s.seen = p, true
	if s.quiet || s.hide {
		return
	}
	if !s.header {
		s.header = true
		s.print(fmt.Sprintf("%sgroup %s: %d inputs\n", s.prefix, p.Group, p.Total))
	}
	now := s.now()
	finished := p.Pending == 0
	if s.bar {
		if finished || now.Sub(s.lastOut) >= barRedraw {
			s.lastOut = now
			fmt.Fprint(s.w, clearLine+barLine(p))
			s.shown = true
		}
		return
	}
	if finished || s.lastOut.IsZero() || now.Sub(s.lastOut) >= lineEvery {
		s.lastOut = now
		fmt.Fprintf(s.w, "%s%s\n", s.prefix, progressLine(p))
	}
}

// print writes text (whole lines) above the bar.
func (s *status) print(text string) {
	if s.shown {
		fmt.Fprint(s.w, clearLine)
	}
	fmt.Fprint(s.w, text)
	if s.shown {
		fmt.Fprint(s.w, barLine(s.last))
	}
}

// done ends the bar's line.
func (s *status) done() {
	if s.shown {
		fmt.Fprintln(s.w)
		s.shown = false
	}
}

func barLine(p client.Progress) string {
	fill := 0
	if p.Total > 0 {
		fill = p.Finished() * barWidth / p.Total
	}
	return fmt.Sprintf("[%s%s] %s", strings.Repeat("#", fill), strings.Repeat("-", barWidth-fill), progressLine(p))
}

// progressLine is e.g. "45/100 done (40 ok, 5 failed), 12.3/s, ETA 4s, spent 0.0123".
func progressLine(p client.Progress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d done (%d ok, %d failed)", p.Finished(), p.Total, p.Finished()-p.Errors, p.Errors)
	if p.Rate > 0 {
		fmt.Fprintf(&b, ", %s/s", formatRate(p.Rate))
	}
	if eta := roundDur(p.ETA); p.ETA > 0 && eta != "0s" {
		fmt.Fprintf(&b, ", ETA %s", eta)
	}
	fmt.Fprintf(&b, ", spent %s", p.Spent)
	return b.String()
}

func formatRate(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 1:
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.3f", r)
}

// roundDur rounds d for display: 1h2m, 3m5s, 12s, 0.4s.
func roundDur(d time.Duration) string {
	switch {
	case d >= time.Hour:
		d = d.Round(time.Minute)
		return strings.TrimSuffix(d.String(), "0s")
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= 10*time.Second:
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
