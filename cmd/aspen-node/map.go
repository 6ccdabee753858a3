package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/internal/cli"
	"github.com/aspen-market/aspen/protocol"
)

const mapLong = `Runs MODULE.wasm once per input, each on at least two workers, and writes one
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
one input. FILE may be - for stdin.`

// defaultMapTimeout is map's running time limit per job: long enough for
// typical jobs (seconds to minutes), short enough that the escrow held per
// task (replicas × max price × timeout) stays small. The node's API default
// is the verifier's maximum, 2h.
const defaultMapTimeout = 10 * time.Minute

type mapFlags struct {
	api                                                                apiFlags
	maxPrice, minSpeed, maxMemory, inputsFile, linesFile, outDir, name string
	replicas                                                           int
	timeout                                                            time.Duration
	quiet, bar, detach, dry                                            bool
	output                                                             cli.Output
	opts                                                               client.MapOptions
	format                                                             outputFormat
}

func mapCommand() *cobra.Command {
	var f mapFlags
	cmd := &cobra.Command{
		Use:   "map MODULE.wasm [INPUT_FILES... | --inputs FILE.jsonl | --lines FILE] --max-price P",
		Short: "run a wasm module on many inputs through the market, results in order",
		Long:  mapLong,
		Example: `  aspen-node map primes.wasm --lines ranges.txt --max-price 0.04
  aspen-node map primes.wasm --inputs inputs.jsonl --max-price 0.04 --output json > results.json
  aspen-node map primes.wasm a.in b.in c.in --max-price 0.04 --dry-run
  aspen-node map primes.wasm --lines ranges.txt --max-price 0.04 --detach`,
		Args: cli.MinArgs(1, "MODULE.wasm"),
		PreRunE: func(cmd *cobra.Command, pos []string) error {
			return f.validate(pos)
		},
		RunE: func(cmd *cobra.Command, pos []string) error {
			return cli.Exit(runMap(cmd.Context(), &f, pos, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	fs := cmd.Flags()
	f.api.register(fs)
	fs.StringVar(&f.maxPrice, "max-price", os.Getenv("ASPEN_MAX_PRICE"), "maximum price per hour of a worker's machine, e.g. 0.04 (required; env ASPEN_MAX_PRICE)")
	fs.StringVar(&f.minSpeed, "min-speed", os.Getenv("ASPEN_MIN_SPEED"), "minimum worker speed, 1.0 = 1e9 standard work units per second (the paper's 1 GHz machine); real machines rate near 1.0 (default 0.1, the lowest rating; you pay at most max price ÷ min speed per standard hour of work; env ASPEN_MIN_SPEED)")
	fs.IntVar(&f.replicas, "replicas", 2, "workers per input (at least 2)")
	fs.DurationVar(&f.timeout, "timeout", defaultMapTimeout, "running time limit per job, e.g. 30s or 2h; the escrow held per task is replicas × max price × this")
	fs.StringVar(&f.maxMemory, "max-memory", "", "memory cap per job, e.g. 256MiB (default the node's)")
	fs.StringVar(&f.inputsFile, "inputs", "", "JSON lines file of inputs (- for stdin)")
	fs.StringVar(&f.linesFile, "lines", "", "file whose every line is one input (- for stdin)")
	fs.StringVar(&f.outDir, "out", "", "write NNNNNN.out / NNNNNN.err per input into `DIR` instead of stdout")
	f.output.Register(cmd)
	fs.StringVar(&f.name, "name", "", "a label for the job group")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress or summary on stderr (per-input errors are still reported)")
	fs.BoolVar(&f.bar, "progress", false, "draw the progress bar even when stderr is not a terminal")
	fs.BoolVar(&f.detach, "detach", false, "submit the group, print its ID and return without waiting")
	fs.BoolVar(&f.dry, "dry-run", false, "print the escrow and estimated cost, run the first input locally, submit nothing")
	return cmd
}

// validate checks the flags and arguments and fills opts and format.
func (f *mapFlags) validate(pos []string) error {
	opts := client.MapOptions{Name: f.name, Replicas: f.replicas, Timeout: f.timeout}
	var err error
	if f.maxPrice == "" {
		return cli.Usagef("--max-price is required (the most you pay per hour of a worker's machine, e.g. 0.04)")
	}
	if opts.MaxPrice, err = protocol.ParseAmount(f.maxPrice); err != nil || opts.MaxPrice == 0 {
		return cli.Usagef("--max-price %q: want a positive decimal amount like 0.04", f.maxPrice)
	}
	if f.minSpeed != "" {
		if opts.MinSpeed, err = protocol.ParseSpeed(f.minSpeed); err != nil {
			return cli.Usagef("--min-speed %q: want a decimal speed like 0.8", f.minSpeed)
		}
	}
	if f.replicas < 2 || f.replicas > protocol.MaxReplicas {
		return cli.Usagef("--replicas must be 2 to %d (every job runs on at least two workers)", protocol.MaxReplicas)
	}
	if f.timeout <= 0 || f.timeout > protocol.MaxJobTimeout {
		return cli.Usagef("--timeout must be more than 0 and at most %s", protocol.MaxJobTimeout)
	}
	if f.maxMemory != "" {
		if opts.MaxMemory, err = parseSize(f.maxMemory); err != nil {
			return cli.Usagef("--max-memory: %v", err)
		}
	}
	if err := f.output.Validate(); err != nil {
		return err
	}
	f.format = outputFormat(f.output.Format)
	if f.outDir != "" && f.format != outText {
		return cli.Usagef("--out writes files and --output %s writes stdout: choose one", f.format)
	}
	if f.detach && f.dry {
		return cli.Usagef("--detach submits and --dry-run does not: choose one")
	}
	sources := 0
	for _, set := range []bool{len(pos) > 1, f.inputsFile != "", f.linesFile != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return cli.Usagef("give the inputs as INPUT_FILES, --inputs FILE.jsonl or --lines FILE (exactly one of them)")
	}
	f.opts = opts
	return nil
}

func runMap(ctx context.Context, f *mapFlags, pos []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts, format := f.opts, f.format
	module, err := os.ReadFile(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node map: module: %v\n", err)
		return 1
	}
	var inputs [][]byte
	switch {
	case f.inputsFile != "":
		inputs, err = readInputsFile(f.inputsFile, stdin, readJSONLInputs)
	case f.linesFile != "":
		inputs, err = readInputsFile(f.linesFile, stdin, readLineInputs)
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
	c, err := f.api.client()
	if f.dry {
		return dryRun(ctx, stdout, stderr, format, c, err, module, inputs, opts)
	}
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node map: %s\n", userError(err))
		return 1
	}
	if f.detach {
		id, err := c.SubmitMap(ctx, module, inputs, opts)
		if id != "" {
			fmt.Fprintln(stdout, id)
		}
		if err != nil {
			fmt.Fprintf(stderr, "aspen-node map: %s\n", userError(err))
			return 1
		}
		if !f.quiet {
			fmt.Fprintf(stderr, "aspen-node map: group %s submitted with %d inputs; follow it with 'aspen-node results %s --wait'\n", id, len(inputs), id)
		}
		return 0
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	st := newStatus(stdout, stderr, "map", f.quiet, f.bar)
	em, err := newEmitter(stdout, stderr, format, f.outDir, len(inputs), st, stop)
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node map: %v\n", err)
		return 1
	}
	em.cancels = true
	funds := newFundsWatch(ctx, c, st, opts.MaxPrice, opts.Replicas, opts.Timeout, opts.MinSpeed)
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

func (a *apiFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&a.api, "api", "", "the node's API `URL` (default $ASPEN_API, else DIR/api.addr)")
	fs.StringVar(&a.token, "token", "", "the API token (default $ASPEN_TOKEN, else DIR/api.token)")
	fs.StringVar(&a.data, "data", client.DefaultDataDir(), "the node's data `DIR` (env ASPEN_DATA)")
}

func (a *apiFlags) client() (*client.Client, error) { return client.Connect(a.api, a.token, a.data) }
