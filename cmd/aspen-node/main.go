// Command aspen-node is the Aspen peer: a worker that sells spare CPU
// cycles, a consumer that buys them, or both. See README.md.
package main

import (
	"context"
	"io"

	"github.com/aspen-market/aspen/internal/cli"
)

// app is aspen-node's command table.
var app = cli.New("aspen-node")

// command is one aspen-node subcommand. Each lives in its own file and
// registers itself in init.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

func register(name string, c command) {
	app.Register(name, cli.Command{Summary: c.summary, Run: c.run})
}

func main() {
	preMain()
	app.Main()
}
