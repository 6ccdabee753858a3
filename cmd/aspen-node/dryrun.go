package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
)

// dryRunReport is what map --dry-run prints. Amounts are decimal.
type dryRunReport struct {
	Inputs   int    `json:"inputs" yaml:"inputs"`
	Replicas int    `json:"replicas" yaml:"replicas"`
	MaxPrice string `json:"max_price" yaml:"max_price"` // per hour
	MinSpeed string `json:"min_speed,omitempty" yaml:"min_speed,omitempty"`
	Timeout  string `json:"timeout" yaml:"timeout"`
	// TaskEscrow is held while a task runs: replicas × max price × the
	// timeout's work budget at the slowest speed accepted.
	TaskEscrow string `json:"task_escrow" yaml:"task_escrow"`
	// Most is what the group can cost at most: every job running its full
	// timeout at the max price.
	Most string `json:"most" yaml:"most"`
	// Sample is input 0 run on this machine in the worker's sandbox.
	Sample *dryRunSample `json:"sample,omitempty" yaml:"sample,omitempty"`
	// Offers seen by the node that accept the terms, and their prices.
	Eligible  int    `json:"eligible_offers" yaml:"eligible_offers"`
	PriceLow  string `json:"price_low,omitempty" yaml:"price_low,omitempty"`
	PriceHigh string `json:"price_high,omitempty" yaml:"price_high,omitempty"`
	// EstimateLow..EstimateHigh: every input taking the sample's time on
	// workers as fast as this machine, at the lowest and highest eligible
	// price (the max price when no offer was seen).
	EstimateLow  string `json:"estimate_low,omitempty" yaml:"estimate_low,omitempty"`
	EstimateHigh string `json:"estimate_high,omitempty" yaml:"estimate_high,omitempty"`
	Balance      string `json:"balance,omitempty" yaml:"balance,omitempty"`
	NodeError    string `json:"node_error,omitempty" yaml:"node_error,omitempty"`
}

type dryRunSample struct {
	Seconds float64 `json:"seconds" yaml:"seconds"`
	Job     string  `json:"job" yaml:"job"`
	Error   string  `json:"error,omitempty" yaml:"error,omitempty"`
}

// dryRun prints what a map would hold and cost and submits nothing. Exit
// status 1 when the first input fails locally or the balance cannot cover
// one task's escrow (the verifier would refuse the group).
func dryRun(ctx context.Context, stdout, stderr io.Writer, format outputFormat, c *client.Client, connErr error,
	module []byte, inputs [][]byte, opts client.MapOptions) int {
	n := len(inputs)
	per := taskEscrow(opts.MaxPrice, opts.Replicas, opts.Timeout, opts.MinSpeed)
	rep := dryRunReport{Inputs: n, Replicas: opts.Replicas, MaxPrice: opts.MaxPrice.String(), Timeout: roundDur(opts.Timeout),
		TaskEscrow: per.String(), Most: mulMicros(per, int64(n)).String()}
	if opts.MinSpeed > 0 {
		rep.MinSpeed = opts.MinSpeed.String()
	}
	code := 0

	sample, err := runLocally(ctx, module, inputs[0], opts)
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node map: dry run: %v\n", err)
		return 1
	}
	rep.Sample = &dryRunSample{Seconds: sample.Duration.Seconds(), Job: sample.Status.String()}
	if jerr := sample.Err(); jerr != nil {
		rep.Sample.Error = jerr.Error()
		code = 1
	}

	low, high := opts.MaxPrice, opts.MaxPrice
	var balance *protocol.Micros
	if connErr == nil {
		offers, err := c.Offers(ctx)
		if err == nil {
			first := true
			for _, o := range offers {
				if o.MinPrice > opts.MaxPrice || (opts.MinSpeed > 0 && (o.Rating == nil || o.Rating.Speed < opts.MinSpeed)) {
					continue
				}
				rep.Eligible++
				if first || o.MinPrice < low {
					low = o.MinPrice
				}
				if first || o.MinPrice > high {
					high = o.MinPrice
				}
				first = false
			}
			if rep.Eligible > 0 {
				rep.PriceLow, rep.PriceHigh = low.String(), high.String()
			}
			var st *client.Statement
			if st, err = c.Balance(ctx); err == nil {
				balance = &st.Balance
				rep.Balance = st.Balance.String()
			}
		}
		if err != nil {
			rep.NodeError = userError(err)
		}
	} else {
		rep.NodeError = userError(connErr)
	}
	if rep.Sample.Error == "" {
		// Every input costing what input 0 metered, at speed 1.0 (the
		// charge is price × work ÷ the worker's rated speed).
		each := func(price protocol.Micros) protocol.Micros {
			p := market.ChargePicos(price, sample.Work, protocol.SpeedUnit)
			return protocol.Micros(min(market.MulDiv(uint64(p), uint64(opts.Replicas)*uint64(n), market.PicosPerMicro), 1<<62))
		}
		rep.EstimateLow, rep.EstimateHigh = each(low).String(), each(high).String()
	}
	if balance != nil && *balance < per {
		code = 1
	}

	switch format {
	case outJSON:
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	case outYAML:
		b, _ := yaml.Marshal(rep)
		stdout.Write(b)
	default:
		printDryRun(stdout, rep, per, balance)
	}
	return code
}

func printDryRun(w io.Writer, r dryRunReport, per protocol.Micros, balance *protocol.Micros) {
	row := func(label, format string, a ...any) {
		fmt.Fprintf(w, "%-17s "+format+"\n", append([]any{label + ":"}, a...)...)
	}
	fmt.Fprintln(w, "dry run: nothing was submitted, nothing spent")
	speed := node.DefaultMinSpeed.String() + " (the node's default)"
	if r.MinSpeed != "" {
		speed = r.MinSpeed
	}
	row("inputs", "%d, %d replicas each", r.Inputs, r.Replicas)
	row("terms", "max price %s/h, timeout %s, min speed %s", r.MaxPrice, r.Timeout, speed)
	row("escrow per task", "%s (%d replicas × %s/h × %s of standard work at the slowest speed accepted), held while the task runs; the unused part is refunded", r.TaskEscrow, r.Replicas, r.MaxPrice, r.Timeout)
	row("at most", "%s (every job running its full timeout at the max price)", r.Most)
	if r.Sample.Error != "" {
		row("sample", "input 0 FAILED on this machine: %s (it would fail on the workers too)", r.Sample.Error)
	} else {
		row("sample", "input 0 ran on this machine in %s (%s)", roundDur(time.Duration(r.Sample.Seconds*float64(time.Second))), r.Sample.Job)
	}
	prices := "no offer seen that accepts these terms: at the max price"
	if r.Eligible > 0 {
		prices = fmt.Sprintf("at %s-%s/h, the prices of the %d offers seen that accept these terms", r.PriceLow, r.PriceHigh, r.Eligible)
	}
	if r.EstimateLow != "" {
		row("estimate", "%s-%s (every input as long as the sample on workers as fast as this machine, %s)", r.EstimateLow, r.EstimateHigh, prices)
	}
	switch {
	case r.NodeError != "":
		row("node", "%s", r.NodeError)
	case balance != nil && *balance < per:
		row("balance", "%s cannot cover one task's escrow: the verifier would refuse the group", r.Balance)
	case balance != nil:
		row("balance", "%s, enough for the escrow of %d tasks at once", r.Balance, int64(*balance/max(per, 1)))
	}
}

// mulMicros is a × n, at most the largest amount.
func mulMicros(a protocol.Micros, n int64) protocol.Micros {
	if a <= 0 || n <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(a), uint64(n))
	if hi != 0 || lo > 1<<63-1 {
		return 1<<63 - 1
	}
	return protocol.Micros(lo)
}

// runLocally runs one job on this machine in the sandbox a worker uses.
func runLocally(ctx context.Context, module, input []byte, opts client.MapOptions) (sandbox.Result, error) {
	cfg := sandbox.DefaultConfig()
	cfg.Isolation = sandbox.Subprocess
	cfg.Slots = 1
	cfg.Nice = 0
	cfg.Timeout = opts.Timeout
	if opts.MaxMemory > 0 {
		cfg.MaxMemory = opts.MaxMemory
	}
	cfg.CacheDir = defaultExecCache()
	sb, err := sandbox.New(cfg)
	if err != nil {
		return sandbox.Result{}, err
	}
	if err := sb.Start(ctx); err != nil {
		return sandbox.Result{}, err
	}
	defer sb.Close()
	return sb.Run(ctx, sandbox.Job{ModuleID: protocol.BlobCID(module).String(), Module: module, Input: input})
}
