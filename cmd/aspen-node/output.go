package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/aspen-market/aspen/client"
)

// outputFormat is what stdout shows: --output text, json or yaml.
type outputFormat string

const (
	outText outputFormat = "text"
	outJSON outputFormat = "json"
	outYAML outputFormat = "yaml"
)

func parseOutput(s string) (outputFormat, error) {
	switch f := outputFormat(s); f {
	case outText, outJSON, outYAML:
		return f, nil
	}
	return "", fmt.Errorf("--output %q: want text, json or yaml", s)
}

// Input statuses in map and results output: one vocabulary with the API's
// task states, plus unfinished.
const (
	inputVerified   = "verified"   // the job ran on agreeing replicas and exited 0
	inputFailed     = "failed"     // non-zero exit, trap, limit, or refused by the verifier
	inputCanceled   = "canceled"   // canceled by the consumer
	inputUnfinished = "unfinished" // not final when the command stopped
)

// inputRecord is one input's outcome in --output json and yaml.
type inputRecord struct {
	Index  int    `json:"index" yaml:"index"`
	Status string `json:"status" yaml:"status"`                   // verified, failed, canceled or unfinished
	Error  string `json:"error,omitempty" yaml:"error,omitempty"` // why, when not verified
	// Job is how the job ended when it ran: ok, exit, trap, timeout,
	// memory-limit, output-limit, invalid-module, missing-import,
	// fetch-failed.
	Job      string `json:"job,omitempty" yaml:"job,omitempty"`
	ExitCode uint32 `json:"exit_code" yaml:"exit_code"`
	// Stdout and Stderr are the job's own output as text; an output that
	// is not valid UTF-8 is given as StdoutBase64 / StderrBase64 instead.
	Stdout       string `json:"stdout" yaml:"stdout"`
	StdoutBase64 string `json:"stdout_base64,omitempty" yaml:"stdout_base64,omitempty"`
	Stderr       string `json:"stderr,omitempty" yaml:"stderr,omitempty"`
	StderrBase64 string `json:"stderr_base64,omitempty" yaml:"stderr_base64,omitempty"`
	Charged      string `json:"charged" yaml:"charged"` // what the consumer paid for it, decimal
}

// recordOf turns a result into its record.
func recordOf(r client.Result) inputRecord {
	rec := inputRecord{Index: r.Index, Status: inputVerified, Job: r.Status, ExitCode: r.ExitCode, Charged: r.Charged.String()}
	rec.Stdout, rec.StdoutBase64 = textOrBase64(r.Stdout)
	rec.Stderr, rec.StderrBase64 = textOrBase64(r.Stderr)
	if r.Err != nil {
		rec.Status, rec.Error = inputFailed, failureText(r)
		var te *client.TaskError
		switch {
		case errors.Is(r.Err, client.ErrNotFinished):
			rec.Status = inputUnfinished
		case errors.As(r.Err, &te) && te.State == client.StateCanceled:
			rec.Status = inputCanceled
		}
	}
	return rec
}

// failureText is r.Err without the "input N: " every per-input error
// starts with.
func failureText(r client.Result) string {
	return strings.TrimPrefix(r.Err.Error(), fmt.Sprintf("input %d: ", r.Index))
}

func textOrBase64(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return "", base64.StdEncoding.EncodeToString(b)
}

// failedLine is the line text output shows for a failed input.
func failedLine(r client.Result) string {
	return fmt.Sprintf("ERROR input %d: %s\n", r.Index, failureText(r))
}

// emitter writes results as they arrive: in input order to stdout, one
// record per input including the failed ones (holding back those that
// arrive early), or one file each into an output directory; and reports
// per-input errors on stderr.
type emitter struct {
	stdout, stderr io.Writer
	format         outputFormat
	outDir         string
	total          int
	abort          func() // stops the map (a write failed)
	status         *status
	cancels        bool // canceling the context cancels the group (map), or only stops waiting (results)

	next     int                    // stdout: the next index to write
	held     map[int]*client.Result // stdout: results waiting for an earlier one
	opened   bool                   // json: the array's "[" is written
	got      int
	failed   int
	reported int
	same     map[string]int // failures the verifier gave the same reason for, by reason
	writeErr error
	// unfinished says what became of the inputs not final at the end.
	unfinished string
}

// Failure reports on stderr: the first maxDetailed with an excerpt of the
// job's stderr, up to maxReported with one line each, then only a count.
const (
	maxDetailed    = 10
	maxReported    = 50
	maxExcerptLine = 5
)

func newEmitter(stdout, stderr io.Writer, format outputFormat, outDir string, total int, st *status, abort func()) (*emitter, error) {
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
	}
	if format == "" {
		format = outText
	}
	return &emitter{stdout: stdout, stderr: stderr, format: format, outDir: outDir, total: total, abort: abort,
		held: map[int]*client.Result{}, same: map[string]int{}, status: st}, nil
}

func (e *emitter) add(r client.Result) {
	e.got++
	if r.Err != nil {
		e.failed++
		if !e.status.outTTY || e.format != outText || e.outDir != "" {
			e.report(r) // else the result's own line on the same terminal says it
		}
	}
	if e.writeErr != nil {
		return
	}
	if e.outDir != "" {
		e.fail(writeOutFiles(e.outDir, r))
		return
	}
	e.held[r.Index] = &r
	e.flush(false)
}

// flush writes the held results that are next in input order; with all,
// every remaining input, an unfinished record for each not received.
func (e *emitter) flush(all bool) {
	if e.writeErr != nil || e.outDir != "" {
		return
	}
	var b bytes.Buffer
	for e.next < e.total {
		h := e.held[e.next]
		if h == nil {
			if !all {
				break
			}
			h = &client.Result{Index: e.next, Err: fmt.Errorf("input %d: %w%s", e.next, client.ErrNotFinished, e.unfinished)}
		}
		delete(e.held, e.next)
		e.next++
		e.encode(&b, *h)
	}
	if all && e.format == outJSON {
		if !e.opened {
			b.WriteString("[")
		}
		b.WriteString("\n]\n")
		e.opened = true
	}
	if b.Len() == 0 {
		return
	}
	e.status.aboveBar(func() {
		if _, err := e.stdout.Write(b.Bytes()); err != nil {
			e.fail(fmt.Errorf("writing results: %w", err))
		}
	})
}

// encode appends r's record in the output format: text is the job's
// stdout ending in a newline (one line per input when each job prints
// one line) or "ERROR input N: why"; json is one element per line of one
// array; yaml one item of one sequence.
func (e *emitter) encode(b *bytes.Buffer, r client.Result) {
	switch e.format {
	case outJSON:
		if e.opened {
			b.WriteString(",\n")
		} else {
			b.WriteString("[\n")
			e.opened = true
		}
		j, _ := json.Marshal(recordOf(r))
		b.Write(j)
	case outYAML:
		y, _ := yaml.Marshal([]inputRecord{recordOf(r)})
		b.Write(y)
	default:
		if r.Err != nil {
			b.WriteString(failedLine(r))
			return
		}
		b.Write(r.Stdout)
		if len(r.Stdout) == 0 || r.Stdout[len(r.Stdout)-1] != '\n' {
			b.WriteByte('\n')
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

// finish writes what is left (every input gets its record: those not
// final are unfinished), reports how the command ended and returns the
// exit status.
func (e *emitter) finish(mapErr error) int {
	switch {
	case !e.cancels:
		e.unfinished = " (the group keeps running)"
	case e.writeErr != nil || errors.Is(mapErr, context.Canceled) || errors.Is(mapErr, context.DeadlineExceeded):
		e.unfinished = ": canceled, escrow refunded"
	}
	e.flush(true)
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
		// The cancel request itself may have failed: say so.
		if subs := unjoin(mapErr); len(subs) > 1 {
			for _, sub := range subs[1:] {
				fmt.Fprintf(e.stderr, "%s%v\n", p, sub)
			}
		}
		return 130
	case mapErr != nil:
		fmt.Fprintf(e.stderr, "%s%s\n", p, userError(mapErr))
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
		msg := fmt.Sprintf("%d inputs: %d verified, %d failed", e.total, e.got-e.failed, e.failed)
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
