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
	"time"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/protocol"
)

func init() {
	register("map", command{summary: "run a wasm module on many inputs through the market, results in order", run: cmdMap})
}

const mapUsage = `usage: aspen-node map MODULE.wasm [INPUT_FILES... | --inputs FILE.jsonl | --lines FILE]
                      --max-price P [--min-speed S] [--replicas 2] [--timeout 10m] [--max-memory SIZE]
                      [--output text|json|yaml | --out DIR] [--detach | --dry-run] [--name NAME]
                      [--quiet | --progress] [--api URL] [--token T] [--data DIR]

Runs MODULE.wasm once per input, each on at least two workers, and writes one
record per input to stdout, in input order, failed inputs included:
  text (default)  the job's stdout, with a newline added when it lacks one, or
                  "ERROR input N: why" for an input that failed;
  json            one array, one object per input per line: index, status
                  (verified, failed, canceled, unfinished), error, job, exit_code,
                  stdout, stderr, charged;
  yaml            the same records as a YAML sequence;
  --out DIR       one file per input instead: NNNNNN.out, plus NNNNNN.err for
                  failures.
Progress and per-input errors (with the job's own stderr) go to stderr: a bar
when stderr is a terminal, else a line every 5 s. Ctrl-C cancels the
unfinished inputs (their escrow is refunded) and exits 130. Exit status 1 when
any input failed, 2 for usage.

--dry-run prints the escrow and an estimated cost range and spends nothing:
it runs the first input on this machine in the worker's sandbox and asks the
node for the offers it has seen and the balance. --detach submits the group,
prints its ID and returns; 'aspen-node results ID --wait' follows it later.

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
		output     = fs.String("output", "text", "what stdout shows: text, json or yaml")
		name       = fs.String("name", "", "a label for the job group")
		quiet      = fs.Bool("quiet", false, "no progress or summary on stderr (per-input errors are still reported)")
		bar        = fs.Bool("progress", false, "draw the progress bar even when stderr is not a terminal")
		detach     = fs.Bool("detach", false, "submit the group, print its ID and return without waiting")
		dry        = fs.Bool("dry-run", false, "print the escrow and estimated cost, run the first input locally, submit nothing")
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
			return usageErr("--min-speed %q: want a decimal speed like 0.8", *minSpeed)
		}
	}
	if *replicas < 2 || *replicas > protocol.MaxReplicas {
		return usageErr("--replicas must be 2 to %d (every job runs on at least two workers)", protocol.MaxReplicas)
	}
	if *timeout <= 0 || *timeout > protocol.MaxJobTimeout {
		return usageErr("--timeout must be more than 0 and at most %s", protocol.MaxJobTimeout)
	}
	if *maxMemory != "" {
		if opts.MaxMemory, err = parseSize(*maxMemory); err != nil {
			return usageErr("--max-memory: %v", err)
		}
	}
	format, err := parseOutput(*output)
	if err != nil {
		return usageErr("%v", err)
	}
	if *outDir != "" && format != outText {
		return usageErr("--out writes files and --output %s writes stdout: choose one", format)
	}
	if *detach && *dry {
		return usageErr("--detach submits and --dry-run does not: choose one")
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
	if *dry {
		return dryRun(ctx, stdout, stderr, format, c, err, module, inputs, opts)
	}
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node map: %s\n", userError(err))
		return 1
	}
	if *detach {
		id, err := c.SubmitMap(ctx, module, inputs, opts)
		if id != "" {
			fmt.Fprintln(stdout, id)
		}
		if err != nil {
			fmt.Fprintf(stderr, "aspen-node map: %s\n", userError(err))
			return 1
		}
		if !*quiet {
			fmt.Fprintf(stderr, "aspen-node map: group %s submitted with %d inputs; follow it with 'aspen-node results %s --wait'\n", id, len(inputs), id)
		}
		return 0
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	st := newStatus(stdout, stderr, "map", *quiet, *bar)
	em, err := newEmitter(stdout, stderr, format, *outDir, len(inputs), st, stop)
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node map: %v\n", err)
		return 1
	}
	em.cancels = true
	funds := newFundsWatch(ctx, c, st, opts.MaxPrice, opts.Replicas, opts.Timeout)
	opts.Progress = func(p client.Progress) {
		st.update(p)
		funds.check(p)
	}
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
