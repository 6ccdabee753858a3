// Command aspen-verifier runs Aspen's trusted verifier: it benchmarks and
// rates workers, signs assignments, compares replicas, spot-checks jobs on
// its own sandbox, keeps the ledger and releases verified results. The
// same binary is the operator's client for the running verifier's API
// (credit, accounts, ledger, payouts, workers, groups). See
// docs/verifier.md.
package main

import (
	"context"
	"io"
	"os"

	"github.com/aspen-market/aspen/internal/cli"
	"github.com/aspen-market/aspen/sandbox"
)

// app is aspen-verifier's command table.
var app = cli.New("aspen-verifier")

// command is one aspen-verifier subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func register(name string, c command) {
	app.Register(name, cli.Command{Summary: c.summary,
		Run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
			return c.run(ctx, args, stdout, stderr)
		}})
}

func main() {
	sandbox.RunChildIfRequested() // a re-executed verifier may be a sandbox executor
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	return app.Run(args, os.Stdin, stdout, stderr)
}
