// Package cli holds what the aspen-node and aspen-verifier command trees
// (github.com/spf13/cobra) share: one way to run a tree with a context
// that ends on SIGINT or SIGTERM, exit statuses (0 success and -h, 1
// failure, 2 usage errors, or the status a command chose), one error line
// per failure, "did you mean" for mistyped commands and flags, a help
// command that refuses unknown topics, a version command and the
// --output flag.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/aspen-market/aspen/internal/buildinfo"
)

// ExitError ends a command with Code; whatever it had to say it printed
// itself.
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Exit returns nil for 0, else an ExitError: for commands that print their
// own report and choose their status (map: 1 when an input failed, 130 when
// interrupted).
func Exit(code int) error {
	if code == 0 {
		return nil
	}
	return ExitError{Code: code}
}

// UsageError is a mistake in how the command was called: exit status 2,
// with a pointer to the command's help.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError.
func Usagef(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// Args validators whose errors are usage errors, naming what is expected.
func ExactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return Usagef("missing %s", what)
		case len(args) > n:
			return Usagef("unexpected argument %q (want %s)", args[n], what)
		}
		return nil
	}
}

// MaxArgs allows at most n arguments, described by what.
func MaxArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			if n == 0 {
				return Usagef("unexpected argument %q (this command takes none)", args[n])
			}
			return Usagef("unexpected argument %q (want at most %s)", args[n], what)
		}
		return nil
	}
}

// MinArgs wants at least n arguments, described by what.
func MinArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return Usagef("missing %s", what)
		}
		return nil
	}
}

// NoArgs refuses arguments.
var NoArgs = MaxArgs(0, "")

// Root prepares a tree's root: errors and usage are printed by Run, not
// by cobra; flag errors are usage errors with a suggestion; the help
// command refuses unknown topics; version and completion commands are
// added.
func Root(root *cobra.Command) *cobra.Command {
	root.SilenceErrors, root.SilenceUsage = true, true
	root.SuggestionsMinimumDistance = 2
	root.SetFlagErrorFunc(flagError)
	root.CompletionOptions.HiddenDefaultCmd = false
	if root.RunE == nil && root.Run == nil {
		root.RunE = func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return UsageError{errors.New("missing command")}
		}
	}
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || cmd == nil || len(rest) > 0 {
				return UsageError{fmt.Errorf("unknown help topic %q%s", strings.Join(args, " "), suggest(c.Root(), args))}
			}
			return cmd.Help()
		},
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var out []cobra.Completion
			for _, s := range c.Root().Commands() {
				if s.IsAvailableCommand() && strings.HasPrefix(s.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(s.Name(), s.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
	})
	root.AddCommand(versionCommand())
	return root
}

func suggest(root *cobra.Command, args []string) string {
	if len(args) == 0 {
		return ""
	}
	if s := root.SuggestionsFor(args[0]); len(s) > 0 {
		return fmt.Sprintf("; did you mean %q?", s[0])
	}
	return ""
}

// flagError turns pflag's errors into usage errors, with the nearest flag
// name for a mistyped one.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		if s := nearestFlag(cmd, name); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		}
	}
	return UsageError{errors.New(msg)}
}

func nearestFlag(cmd *cobra.Command, name string) string {
	best, bestD := "", 3
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		d := levenshtein(name, f.Name)
		if strings.HasPrefix(f.Name, name) && len(name) >= 3 {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Run runs the tree with args (without the program name) and returns the
// exit status. The commands' context ends on SIGINT or SIGTERM.
func Run(root *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return RunContext(ctx, root, args, stdin, stdout, stderr)
}

// RunContext is Run with the caller's context.
func RunContext(ctx context.Context, root *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if args == nil {
		args = []string{}
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	return Report(cmd, err, stderr)
}

// Report prints err for cmd (once, in one line, prefixed by the command's
// path) and returns the exit status.
func Report(cmd *cobra.Command, err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	path, help := "?", "?"
	if cmd != nil {
		path, help = cmd.CommandPath(), cmd.CommandPath()
		if cmd.Name() == "help" && cmd.HasParent() {
			help = cmd.Root().CommandPath()
		}
	}
	var ue UsageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") {
		msg := strings.TrimSpace(err.Error())
		if head, sugg, ok := strings.Cut(msg, "\n\nDid you mean this?\n\t"); ok {
			msg = head + "; did you mean " + strings.Join(strings.Fields(sugg), " or ") + "?"
		}
		fmt.Fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", path, msg, help)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %s\n", path, err)
	return 1
}

// Output is the --output flag of listings and reports.
type Output struct {
	Format string
	json   bool
	cmd    *cobra.Command
}

// Register adds --output to cmd.
func (o *Output) Register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.Format, "output", "o", "text", "what stdout shows: text, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]cobra.Completion{"text", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
}

// RegisterJSON adds --json, the older spelling of --output json: hidden,
// and Validate warns on stderr when it is used.
func (o *Output) RegisterJSON(cmd *cobra.Command) {
	o.cmd = cmd
	cmd.Flags().BoolVar(&o.json, "json", false, "the same as --output json")
	_ = cmd.Flags().MarkHidden("json")
}

// Validate refuses a format other than text, json or yaml.
func (o *Output) Validate() error {
	if o.json {
		if o.cmd != nil {
			fmt.Fprintf(o.cmd.ErrOrStderr(), "%s: --json is deprecated, use --output json\n", o.cmd.CommandPath())
		}
		o.Format = "json"
	}
	switch o.Format {
	case "text", "json", "yaml":
		return nil
	}
	return Usagef("--output %q: want text, json or yaml", o.Format)
}

// Structured reports whether the output is json or yaml.
func (o *Output) Structured() bool { return o.Format == "json" || o.Format == "yaml" }

// Write writes v as JSON (indented) or YAML; text calls text.
func (o *Output) Write(w io.Writer, v any, text func() error) error {
	switch o.Format {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		b, err := YAML(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return text()
}

// YAML encodes v as YAML with the field names of its JSON encoding (the
// API's types have JSON tags only), integers kept as integers.
func YAML(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, err
	}
	return yaml.Marshal(numbers(tree))
}

// numbers replaces json.Number with int64 or float64.
func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return string(x)
	}
	return v
}

func versionCommand() *cobra.Command {
	var out Output
	cmd := &cobra.Command{
		Use:   "version",
		Short: "print the version and build information",
		Args:  NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			return out.Validate()
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := buildinfo.Read()
			return out.Write(cmd.OutOrStdout(), in, func() error {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", cmd.Root().Name(), in)
				return err
			})
		},
	}
	out.Register(cmd)
	return cmd
}
