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

	"github.com/spf13/cobra"

	"github.com/aspen-market/aspen/internal/cli"
	"github.com/aspen-market/aspen/sandbox"
)

// newRoot is aspen-verifier's command table.
func newRoot() *cobra.Command {
	root := cli.Root(&cobra.Command{
		Use:   "aspen-verifier",
		Short: "Aspen's trusted verifier, and the operator's client for it",
		Long: `aspen-verifier runs Aspen's trusted verifier ('init', then 'start'): it
benchmarks and rates workers, signs assignments, compares replicas, spot-checks
jobs, keeps the ledger and releases verified results. Its other commands are the
operator's client for a running verifier's API: credit, accounts, ledger,
payouts, workers, groups.`,
	})
	root.AddCommand(initCommand(), startCommand(), creditCommand(), accountsCommand(), ledgerCommand(),
		payoutsCommand(), workersCommand(), groupsCommand())
	return root
}

func main() {
	sandbox.RunChildIfRequested() // a re-executed verifier may be a sandbox executor
	os.Exit(cli.Run(newRoot(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run runs aspen-verifier with args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.RunContext(ctx, newRoot(), args, os.Stdin, stdout, stderr)
}
