package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/examples"
	"github.com/aspen-market/aspen/internal/cli"
	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier"
)

// exampleInputs are the devnet's inputs for each example job: n inputs
// of the given size (the primes range width, the montecarlo samples, the
// hashchain rounds), or the example's default size when size is 0.
var exampleInputs = map[string]func(n, size int) [][]byte{
	"primes": func(n, size int) [][]byte {
		size = cmp.Or(size, 10_000_000)
		out := make([][]byte, n)
		for i := range out {
			lo := i * size
			out[i] = fmt.Appendf(nil, "%d %d", lo, lo+size)
		}
		return out
	},
	"montecarlo": func(n, size int) [][]byte {
		size = cmp.Or(size, 2_000_000)
		out := make([][]byte, n)
		for i := range out {
			out[i] = fmt.Appendf(nil, "%d %d", i+1, size)
		}
		return out
	},
	"hashchain": func(n, size int) [][]byte {
		size = cmp.Or(size, 200_000)
		out := make([][]byte, n)
		for i := range out {
			out[i] = fmt.Appendf(nil, "%d\ninput-%d", size, i)
		}
		return out
	},
}

type devnet struct {
	dir      string
	log      *slog.Logger
	verifier *verifier.Verifier
	workers  []*node.Node
	consumer *node.Node
}

func (d *devnet) close() {
	if d.consumer != nil {
		d.consumer.Close()
	}
	for _, w := range d.workers {
		w.Close()
	}
	if d.verifier != nil {
		d.verifier.Close()
	}
}

type devnetFlags struct {
	workers, tasks, size                        int
	example, dir, credit, maxPrice, workerPrice string
	keep, verbose                               bool
	spot, tolerance                             float64
}

func devnetCommand() *cobra.Command {
	var f devnetFlags
	cmd := &cobra.Command{
		Use:   "devnet",
		Short: "run a whole local network (verifier, workers, consumer) and an example job",
		Long: `Runs a verifier, several workers and a consumer in this process on loopback,
benchmarks the workers, credits the consumer, runs an example map job end to
end and prints the verified results and the ledger. With --keep the network
keeps running: it prints every peer's dashboard, a devnet.env to source and a
map command to try in another shell.`,
		Example: `  aspen-node devnet
  aspen-node devnet --example hashchain --tasks 20
  aspen-node devnet --keep --dir /tmp/aspen`,
		Args: cli.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if f.workers < 2 {
				return cli.Usagef("--workers %d: at least 2 workers are needed (every job runs on two)", f.workers)
			}
			if f.size < 0 {
				return cli.Usagef("--size %d: want 0 (the example's default) or more", f.size)
			}
			if f.tasks < 1 {
				return cli.Usagef("--tasks %d: want at least 1", f.tasks)
			}
			if _, ok := exampleInputs[f.example]; !ok {
				return cli.Usagef("--example %q: want one of %s", f.example, strings.Join(examples.Names(), ", "))
			}
			if a, err := protocol.ParseAmount(f.credit); err != nil || a <= 0 {
				return cli.Usagef("--credit %q: want a positive decimal amount", f.credit)
			}
			if a, err := protocol.ParseAmount(f.maxPrice); err != nil || a <= 0 {
				return cli.Usagef("--max-price %q: want a positive decimal amount per hour", f.maxPrice)
			}
			if a, err := protocol.ParseAmount(f.workerPrice); err != nil || a <= 0 {
				return cli.Usagef("--worker-price %q: want a positive decimal amount per hour", f.workerPrice)
			}
			if f.spot < 0 || f.spot > 1 {
				return cli.Usagef("--spot-check %v: want a fraction between 0 and 1", f.spot)
			}
			if f.tolerance < 0 || f.tolerance >= 1 {
				return cli.Usagef("--speed-tolerance %v: want a fraction between 0 and 1", f.tolerance)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Exit(runDevnet(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&f.workers, "workers", 3, "number of workers")
	fs.StringVar(&f.example, "example", "primes", "example job to run: "+strings.Join(examples.Names(), ", "))
	fs.IntVar(&f.tasks, "tasks", 10, "number of inputs of the example job")
	fs.IntVar(&f.size, "size", 0, "size of each input: the primes range width (default 10000000), the montecarlo samples (2000000) or the hashchain rounds (200000; 2000 is a job of about 3 ms)")
	fs.BoolVar(&f.keep, "keep", false, "keep the network running after the example, print its dashboards and a map command to try (Ctrl-C stops it)")
	fs.StringVar(&f.dir, "dir", "", "directory for the network's data (default: a temporary directory, removed at exit)")
	fs.StringVar(&f.credit, "credit", "100", "credit given to the consumer")
	fs.StringVar(&f.maxPrice, "max-price", "20", "consumer's max price per hour (devnet workers ask 5.00, 7.50, 10.00 … per hour; the default takes up to seven of them)")
	fs.StringVar(&f.workerPrice, "worker-price", "5", "the first worker's asking price per hour; each next one asks half of it more (5.00, 7.50, 10.00 …)")
	fs.Float64Var(&f.spot, "spot-check", 0.1, "fraction of tasks the verifier also runs itself")
	fs.Float64Var(&f.tolerance, "speed-tolerance", 0.5, "speed rule tolerance (production default 0.15; all devnet nodes share this machine's cores, so timings are noisier)")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "log every node's decisions to stderr")
	_ = cmd.RegisterFlagCompletionFunc("example", cobra.FixedCompletions(examples.Names(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runDevnet(ctx context.Context, f devnetFlags, stdout, stderr io.Writer) int {
	workers, example, tasks, keep, dir, verbose := &f.workers, &f.example, &f.tasks, &f.keep, &f.dir, &f.verbose
	inputsOf := exampleInputs[*example]
	module, err := examples.Module(*example)
	if err != nil {
		fmt.Fprintln(stderr, "aspen-node devnet:", err)
		return 1
	}
	creditAmt, _ := protocol.ParseAmount(f.credit)
	price, _ := protocol.ParseAmount(f.maxPrice)
	root := *dir
	if root == "" {
		if root, err = os.MkdirTemp("", "aspen-devnet-"); err != nil {
			fmt.Fprintln(stderr, "aspen-node devnet:", err)
			return 1
		}
		if !*keep {
			defer os.RemoveAll(root)
		}
	}
	logOut := io.Discard
	if *verbose {
		logOut = stderr
	}
	d := &devnet{dir: root, log: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	defer d.close()
	start := time.Now()
	workerPrice, _ := protocol.ParseAmount(f.workerPrice)
	if err := d.start(ctx, *workers, workerPrice, f.spot, f.tolerance); err != nil {
		fmt.Fprintln(stderr, "aspen-node devnet:", err)
		return 1
	}
	where := ""
	if *keep || *dir != "" {
		where = fmt.Sprintf(" (data in %s)", root) // a temporary directory is removed at exit: not worth naming
	}
	fmt.Fprintf(stdout, "devnet: verifier %s, %d workers, consumer %s%s\n", short(d.verifier.ID().String()), len(d.workers), short(d.consumer.ID().String()), where)
	if err := d.waitRated(ctx, 60*time.Second); err != nil {
		fmt.Fprintln(stderr, "aspen-node devnet:", err)
		return 1
	}
	fmt.Fprintf(stdout, "devnet: %d workers benchmarked and rated in %s\n", len(d.workers), time.Since(start).Round(time.Millisecond))
	if err := d.verifier.Credit(ctx, d.consumer.ID(), creditAmt); err != nil {
		fmt.Fprintln(stderr, "aspen-node devnet: credit:", err)
		return 1
	}
	fmt.Fprintf(stdout, "devnet: consumer credited %s\n\n", creditAmt)

	cl := client.New("http://"+d.consumer.APIAddr(), d.consumer.Token())
	inputs := inputsOf(*tasks, f.size)
	fmt.Fprintf(stdout, "running example %q: %d inputs, 2 replicas each, max price %s/h\n", *example, len(inputs), price)
	jobStart := time.Now()
	var groupID string
	results, err := cl.Map(ctx, module, inputs, client.MapOptions{
		Name: "devnet-" + *example, MaxPrice: price, MinSpeed: 0, Replicas: 2, Timeout: time.Minute,
		Progress: func(p client.Progress) { groupID = p.Group },
	})
	if err != nil {
		fmt.Fprintln(stderr, "aspen-node devnet: map:", err)
		return 1
	}
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
	}
	if failed == 0 {
		fmt.Fprintf(stdout, "all %d results verified in %s\n\n", len(results), time.Since(jobStart).Round(time.Millisecond))
	} else {
		fmt.Fprintf(stdout, "%d results in %s, %d of them failed\n\n", len(results), time.Since(jobStart).Round(time.Millisecond), failed)
	}
	fmt.Fprintf(stdout, "%-5s %-24s %-22s %s\n", "input", "argument", "verification", "result")
	for i, r := range results {
		arg := strings.ReplaceAll(string(inputs[i]), "\n", " ")
		verdict := d.verdict(groupID, i)
		out := strings.TrimSpace(string(r.Stdout))
		if r.Err != nil {
			out = "ERROR " + r.Err.Error()
		}
		fmt.Fprintf(stdout, "%-5d %-24s %-22s %s\n", i, truncateStr(arg, 24), verdict, out)
	}
	fmt.Fprintln(stdout)
	if err := d.printLedger(ctx, stdout); err != nil {
		fmt.Fprintln(stderr, "aspen-node devnet: ledger:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\ndevnet finished in %s\n", time.Since(start).Round(time.Millisecond))
	if *keep {
		hint, err := d.writeTryFiles(root, *example, inputs, price)
		if err != nil {
			fmt.Fprintln(stderr, "aspen-node devnet:", err)
			return 1
		}
		fmt.Fprintf(stdout, "\nthe network keeps running (Ctrl-C stops it). Dashboards:\n")
		d.printDashboards(stdout)
		fmt.Fprintf(stdout, "\nin another shell:\n  . %s\n  %s\n", filepath.Join(root, "devnet.env"), hint)
		<-ctx.Done()
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func (d *devnet) start(ctx context.Context, workers int, price protocol.Micros, spot, tolerance float64) error {
	vcfg := verifier.DefaultConfig()
	vcfg.DataDir = filepath.Join(d.dir, "verifier")
	vcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	vcfg.APIAddr = "127.0.0.1:0"
	vcfg.Logger = d.log.With("who", "verifier")
	vcfg.Market.SpotCheckPPM = uint32(spot * 1_000_000)
	vcfg.Market.HeartbeatTimeout = 5 * time.Second
	vcfg.Market.SpeedTolerancePPM = uint32(tolerance * 1_000_000)
	vcfg.BenchmarkTasks = 3
	vcfg.ScheduleInterval = 20 * time.Millisecond
	v, err := verifier.New(vcfg)
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	if err := v.Start(ctx); err != nil {
		v.Close()
		return fmt.Errorf("verifier: %w", err)
	}
	d.verifier = v
	vinfo := v.AddrInfo()
	for i := 0; i < workers; i++ {
		cfg := node.DefaultConfig()
		cfg.DataDir = filepath.Join(d.dir, fmt.Sprintf("worker-%d", i+1))
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		cfg.APIAddr = "127.0.0.1:0"
		cfg.Verifier = vinfo
		cfg.Role = node.RoleWorker
		// Devnet prices are high by default so that jobs of a fraction of
		// a second cost visible amounts: 5.00, 7.50, 10.00 … per hour.
		cfg.MinPrice = price + price/2*protocol.Micros(i)
		cfg.Owner = fmt.Sprintf("owner-%d", i+1)
		cfg.OfferInterval = 2 * time.Second
		cfg.HeartbeatInterval = 500 * time.Millisecond
		cfg.Logger = d.log.With("who", fmt.Sprintf("worker-%d", i+1))
		n, err := node.New(cfg)
		if err != nil {
			return fmt.Errorf("worker %d: %w", i+1, err)
		}
		if err := n.Start(ctx); err != nil {
			n.Close()
			return fmt.Errorf("worker %d: %w", i+1, err)
		}
		d.workers = append(d.workers, n)
	}
	cfg := node.DefaultConfig()
	cfg.DataDir = filepath.Join(d.dir, "consumer")
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIAddr = "127.0.0.1:0"
	cfg.Verifier = vinfo
	cfg.Role = node.RoleConsumer
	cfg.Logger = d.log.With("who", "consumer")
	n, err := node.New(cfg)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	if err := n.Start(ctx); err != nil {
		n.Close()
		return fmt.Errorf("consumer: %w", err)
	}
	d.consumer = n
	return nil
}

// waitRated waits until every worker holds a rating from the verifier.
func (d *devnet) waitRated(ctx context.Context, limit time.Duration) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		rated := 0
		for _, w := range d.workers {
			if w.Info().Rating != nil {
				rated++
			}
		}
		if rated == len(d.workers) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("only %d of %d workers were rated within %s", rated, len(d.workers), limit)
		case <-tick.C:
		}
	}
}

// writeEnv writes the shell environment that points aspen-node (and
// client.FromEnv) at the devnet's consumer and aspen-verifier at its
// verifier: '. devnet.env' exports it.
func (d *devnet) writeEnv(path string) error {
	var b strings.Builder
	for _, kv := range [][2]string{
		{"ASPEN_API", "http://" + d.consumer.APIAddr()},
		{"ASPEN_TOKEN", d.consumer.Token()},
		{"ASPEN_VERIFIER_API", "http://" + d.verifier.APIAddr()},
		{"ASPEN_VERIFIER_TOKEN", d.verifier.Token()},
		{"ASPEN_VERIFIER", verifierAddr(d.verifier)},
	} {
		fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeTryFiles writes the example's module, its inputs and the devnet's
// environment into root and returns a map command that runs them on this
// devnet as printed: every devnet worker accepts maxPrice.
func (d *devnet) writeTryFiles(root, example string, inputs [][]byte, maxPrice protocol.Micros) (string, error) {
	module, err := examples.Module(example)
	if err != nil {
		return "", err
	}
	modPath := filepath.Join(root, example+".wasm")
	if err := os.WriteFile(modPath, module, 0o644); err != nil {
		return "", err
	}
	var in bytes.Buffer
	for _, x := range inputs {
		b, _ := json.Marshal(string(x))
		in.Write(append(b, '\n'))
	}
	inPath := filepath.Join(root, "inputs.jsonl")
	if err := os.WriteFile(inPath, in.Bytes(), 0o644); err != nil {
		return "", err
	}
	if err := d.writeEnv(filepath.Join(root, "devnet.env")); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s map %s --inputs %s --max-price %s", selfCommand(), shellQuote(modPath), shellQuote(inPath), maxPrice), nil
}

// printDashboards lists every devnet peer's dashboard link.
func (d *devnet) printDashboards(w io.Writer) {
	fmt.Fprintf(w, "  %-9s http://%s/#token=%s\n", "verifier", d.verifier.APIAddr(), d.verifier.Token())
	fmt.Fprintf(w, "  %-9s http://%s/#token=%s\n", "consumer", d.consumer.APIAddr(), d.consumer.Token())
	for i, n := range d.workers {
		fmt.Fprintf(w, "  %-9s http://%s/#token=%s\n", fmt.Sprintf("worker-%d", i+1), n.APIAddr(), n.Token())
	}
}

// selfCommand is how to run this binary again from another shell:
// "go run ./cmd/aspen-node" when it was built by go run (its binary is
// removed at exit), else the name it was started by.
func selfCommand() string {
	exe := os.Args[0]
	if strings.Contains(exe, "go-build") {
		return "go run ./cmd/aspen-node"
	}
	return exe
}

func verifierAddr(v *verifier.Verifier) string {
	addrs := v.Addrs()
	if len(addrs) == 0 {
		return v.ID().String()
	}
	return addrs[0].String() + "/p2p/" + v.ID().String()
}

func short(s string) string {
	if len(s) > 10 {
		return "…" + s[len(s)-8:]
	}
	return s
}

func truncateStr(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
