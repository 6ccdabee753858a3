// Package cli is the subcommand dispatcher shared by the aspen-node and
// aspen-verifier binaries: a table of named commands, usage text, help,
// and a context that ends on SIGINT or SIGTERM.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// Command is one subcommand. Run returns the process exit status.
type Command struct {
	Summary string
	Run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// App is a binary's command table. Register commands (normally from init
// functions), then call Main or Run.
type App struct {
	name string
	cmds map[string]Command
}

// New returns an empty command table for the binary called name.
func New(name string) *App { return &App{name: name, cmds: map[string]Command{}} }

// Register adds a command; registering a name twice panics.
func (a *App) Register(name string, c Command) {
	if _, dup := a.cmds[name]; dup {
		panic(a.name + ": duplicate command " + name)
	}
	a.cmds[name] = c
}

// Usage writes the command list.
func (a *App) Usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags]\n\ncommands:\n", a.name)
	names := make([]string, 0, len(a.cmds))
	width := 0
	for n := range a.cmds {
		names = append(names, n)
		width = max(width, len(n))
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s %s\n", width, n, a.cmds[n].Summary)
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND -h' for a command's flags.\n", a.name)
}

// Run dispatches args (without the program name) and returns the exit
// status: 2 for a missing or unknown command, 0 for help. The command's
// context ends on SIGINT or SIGTERM.
func (a *App) Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		a.Usage(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		a.Usage(stdout)
		return 0
	}
	c, ok := a.cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n", a.name, name)
		a.Usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.Run(ctx, args[1:], stdin, stdout, stderr)
}

// Main runs the process's arguments and exits with the command's status.
func (a *App) Main() {
	os.Exit(a.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
