package main

import (
	"context"
	"io"
)

// cmdX run one subcommand through the whole command tree, as the binary
// does: flags, validation, exit statuses.
func sub(name string) func(context.Context, []string, io.Reader, io.Writer, io.Writer) int {
	return func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
		return run(ctx, append([]string{name}, args...), stdin, stdout, stderr)
	}
}

var (
	cmdMap     = sub("map")
	cmdGroups  = sub("groups")
	cmdResults = sub("results")
	cmdBalance = sub("balance")
	cmdExec    = sub("exec")
	cmdDevnet  = sub("devnet")
)
