package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/internal/cli"
)

func groupsCommand() *cobra.Command {
	var af apiFlags
	var out cli.Output
	var cancel bool
	cmd := &cobra.Command{
		Use:   "groups [ID]",
		Short: "list job groups, or show one group's tasks (--cancel to cancel it)",
		Long: `Without ID, lists the node's job groups with their progress, newest first.
With ID, shows the group and every task: state, how its job ended, what it
cost. With --cancel ID, cancels the group's unfinished tasks; their escrow is
refunded.`,
		Example: `  aspen-node groups
  aspen-node groups 0f3c... --output json
  aspen-node groups --cancel 0f3c...`,
		Args: cli.MaxArgs(1, "one group ID"),
		PreRunE: func(cmd *cobra.Command, pos []string) error {
			if cancel && len(pos) == 0 {
				return cli.Usagef("--cancel needs the group's ID")
			}
			return out.Validate()
		},
		RunE: func(cmd *cobra.Command, pos []string) error {
			ctx, stdout := cmd.Context(), cmd.OutOrStdout()
			c, err := af.client()
			if err != nil {
				return userErr(err)
			}
			if len(pos) == 0 {
				gs, err := c.Groups(ctx)
				if err != nil {
					return userErr(err)
				}
				if gs == nil {
					gs = []client.Group{}
				}
				return out.Write(stdout, gs, func() error { printGroups(stdout, gs); return nil })
			}
			id := pos[0]
			if cancel {
				g, err := c.Cancel(ctx, id)
				if err != nil {
					return userErr(err)
				}
				return out.Write(stdout, g, func() error {
					_, err := fmt.Fprintf(stdout, "group %s canceled: %s\n", id, groupSummary(g))
					return err
				})
			}
			g, err := c.Group(ctx, id)
			if err != nil {
				return userErr(err)
			}
			ts, err := c.Tasks(ctx, id)
			if err != nil {
				return userErr(err)
			}
			return out.Write(stdout, struct {
				Group *client.Group `json:"group" yaml:"group"`
				Tasks []client.Task `json:"tasks" yaml:"tasks"`
			}{g, ts}, func() error { printGroup(stdout, g, ts); return nil })
		},
	}
	af.register(cmd.Flags())
	out.Register(cmd)
	cmd.Flags().BoolVar(&cancel, "cancel", false, "cancel group ID's unfinished tasks (their escrow is refunded)")
	out.RegisterJSON(cmd)
	return cmd
}

// userErr is err in the user's words, for a command to return.
func userErr(err error) error { return errors.New(userError(err)) }

func groupSummary(g *client.Group) string {
	s := fmt.Sprintf("%s, %d/%d finished (%d verified, %d failed, %d canceled), spent %s",
		g.State, g.Finished(), g.Tasks, g.Verified, g.Failed, g.Canceled, g.Spent)
	if g.Fetching > 0 {
		s += fmt.Sprintf(", %d results being fetched", g.Fetching)
	}
	return s
}

func formatTime(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return time.UnixMilli(ms).Local().Format("2006-01-02 15:04:05")
}

// printGroups lists groups, one line each.
func printGroups(w io.Writer, gs []client.Group) {
	if len(gs) == 0 {
		fmt.Fprintln(w, "no job groups (submit one with 'aspen-node map')")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tDONE\tVERIFIED\tFAILED\tCANCELED\tSPENT\tCREATED")
	for _, g := range gs {
		name := g.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%s\t%s\n", g.ID, name, g.State, g.Finished(), g.Tasks,
			g.Verified, g.Failed, g.Canceled, g.Spent, formatTime(g.Created))
	}
	tw.Flush()
}

// printGroup shows one group and its tasks.
func printGroup(w io.Writer, g *client.Group, ts []client.Task) {
	name := ""
	if g.Name != "" {
		name = fmt.Sprintf(" %q", g.Name)
	}
	fmt.Fprintf(w, "group %s%s: %s\n", g.ID, name, groupSummary(g))
	fmt.Fprintf(w, "  module %s (%d bytes)\n", g.Module, g.ModuleSize)
	fmt.Fprintf(w, "  max price %s per hour, min speed %s, %d replicas, timeout %s",
		g.MaxPrice, g.MinSpeed, g.Replicas, time.Duration(g.TimeoutMS)*time.Millisecond)
	if g.MaxMemory > 0 {
		fmt.Fprintf(w, ", memory cap %d MiB", g.MaxMemory>>20)
	}
	fmt.Fprintf(w, "\n  created %s, %d of %d tasks accepted by the verifier\n", formatTime(g.Created), g.Submitted, g.Tasks)
	if g.Error != "" {
		fmt.Fprintf(w, "  refused: %s\n", g.Error)
	}
	if len(ts) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tSTATE\tJOB\tEXIT\tREPLICAS\tCHARGED\tREASON")
	for _, t := range ts {
		job, exit, replicas := "-", "-", "-"
		if t.State == client.StateVerified || t.State == client.StateFetching {
			job, exit = t.Status.String(), fmt.Sprint(t.ExitCode)
		}
		if t.Replicas > 0 {
			replicas = fmt.Sprint(t.Replicas)
		}
		reason := strings.ReplaceAll(t.Reason, "\n", " ")
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Index, t.State, job, exit, replicas, t.Charged, reason)
	}
	tw.Flush()
}

func resultsCommand() *cobra.Command {
	var af apiFlags
	var out cli.Output
	var outDir string
	var wait, quiet, bar bool
	cmd := &cobra.Command{
		Use:   "results ID",
		Short: "print a job group's results in input order, as map does",
		Long: `Prints a finished job group's results as 'aspen-node map' does: one record per
input on stdout in input order, failed inputs included (--output text, json or
yaml), or files in --out DIR; per-input errors on stderr. With --wait it
follows a running group to its end (Ctrl-C stops waiting; the group keeps
running). Exit status 1 when any input failed.`,
		Args: cli.ExactArgs(1, "the group's ID"),
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.Validate(); err != nil {
				return err
			}
			if outDir != "" && out.Structured() {
				return cli.Usagef("--out writes files and --output %s writes stdout: choose one", out.Format)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, pos []string) error {
			ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			id := pos[0]
			c, err := af.client()
			if err != nil {
				return userErr(err)
			}
			g, err := c.Group(ctx, id)
			if err != nil {
				return userErr(err)
			}
			if !g.Done && !wait {
				return fmt.Errorf("group %s is still running (%d of %d finished); use --wait to wait for it", id, g.Finished(), g.Tasks)
			}
			ctx, stop := context.WithCancel(ctx)
			defer stop()
			st := newStatus(stdout, stderr, "results", quiet, bar)
			st.hide = g.Done // nothing to follow
			em, err := newEmitter(stdout, stderr, outputFormat(out.Format), outDir, g.Tasks, st, stop)
			if err != nil {
				return err
			}
			return cli.Exit(em.finish(c.Wait(ctx, id, st.update, em.add)))
		},
	}
	af.register(cmd.Flags())
	out.Register(cmd)
	cmd.Flags().StringVar(&outDir, "out", "", "write NNNNNN.out / NNNNNN.err per input into `DIR` instead of stdout")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for a running group to finish (Ctrl-C stops waiting; the group keeps running)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress or summary on stderr")
	cmd.Flags().BoolVar(&bar, "progress", false, "draw the progress bar even when stderr is not a terminal")
	return cmd
}
