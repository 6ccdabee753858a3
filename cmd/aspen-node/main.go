// Command aspen-node is the Aspen peer: a worker that sells spare CPU
// cycles, a consumer that buys them, or both. See README.md.
package main

import (
	"context"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/aspen-market/aspen/internal/cli"
)

// newRoot is aspen-node's command table.
func newRoot() *cobra.Command {
	root := cli.Root(&cobra.Command{
		Use:   "aspen-node",
		Short: "the Aspen peer: sell spare CPU cycles as a worker, buy them as a consumer",
		Long: `aspen-node is the Aspen peer: a worker that sells spare CPU cycles, a consumer
that buys them, or both. 'aspen-node devnet' runs a whole local network and an
example job; 'aspen-node init' and 'aspen-node start' run a node of a real one.`,
	})
	root.AddCommand(initCommand(), startCommand(), devnetCommand(), mapCommand(), groupsCommand(),
		resultsCommand(), balanceCommand(), execCommand(), doctorCommand())
	return root
}

// run runs aspen-node with args (without the program name) and returns
// the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli.RunContext(ctx, newRoot(), args, stdin, stdout, stderr)
}

func main() {
	preMain()
	os.Exit(cli.Run(newRoot(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
