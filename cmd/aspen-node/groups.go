package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aspen-market/aspen/client"
)

func init() {
	register("groups", command{summary: "list job groups, or show one group's tasks (--cancel to cancel it)", run: cmdGroups})
	register("results", command{summary: "print a finished job group's results in input order", run: cmdResults})
}

func cmdGroups(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("groups", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af apiFlags
	af.register(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	cancel := fs.Bool("cancel", false, "cancel group ID's unfinished tasks (their escrow is refunded)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: aspen-node groups [ID] [--cancel] [--json] [--api URL] [--token T] [--data DIR]\n\n"+
			"Without ID, lists the node's job groups with their progress, newest first.\n"+
			"With ID, shows the group and every task: state, how its job ended, what it cost.\n\nflags:\n")
		fs.PrintDefaults()
	}
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) > 1 || (*cancel && len(pos) == 0) {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "aspen-node groups: %v\n", err)
		return 1
	}
	c, err := af.client()
	if err != nil {
		return fail(err)
	}
	if len(pos) == 0 {
		gs, err := c.Groups(ctx)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return writeJSONOut(stdout, stderr, gs)
		}
		printGroups(stdout, gs)
		return 0
	}
	id := pos[0]
	if *cancel {
		g, err := c.Cancel(ctx, id)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "group %s canceled: %s\n", id, groupSummary(g))
		return 0
	}
	g, err := c.Group(ctx, id)
	if err != nil {
		return fail(err)
	}
	ts, err := c.Tasks(ctx, id)
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		return writeJSONOut(stdout, stderr, struct {
			Group *client.Group `json:"group"`
			Tasks []client.Task `json:"tasks"`
		}{g, ts})
	}
	printGroup(stdout, g, ts)
	return 0
}

func writeJSONOut(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "aspen-node: %v\n", err)
		return 1
	}
	return 0
}

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

func cmdResults(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("results", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af apiFlags
	af.register(fs)
	outDir := fs.String("out", "", "write NNNNNN.out / NNNNNN.err per input into `DIR` instead of stdout")
	wait := fs.Bool("wait", false, "wait for a running group to finish (Ctrl-C stops waiting; the group keeps running)")
	quiet := fs.Bool("quiet", false, "no progress or summary on stderr")
	bar := fs.Bool("progress", false, "draw the progress bar even when stderr is not a terminal")
	output := fs.String("output", "text", "what stdout shows: text, json or yaml (one record per input, as map prints them)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: aspen-node results ID [--out DIR] [--wait] [--quiet] [--api URL] [--token T] [--data DIR]\n\n"+
			"Prints a finished job group's results in input order, as 'aspen-node map' does:\n"+
			"each result's stdout to stdout (or files in --out DIR), per-input errors on stderr.\n"+
			"Exit status 1 when any input failed.\n\nflags:\n")
		fs.PrintDefaults()
	}
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return 2
	}
	format, err := parseOutput(*output)
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node results: %v\n", err)
		return 2
	}
	if *outDir != "" && format != outText {
		fmt.Fprintf(stderr, "aspen-node results: --out writes files and --output %s writes stdout: choose one\n", format)
		return 2
	}
	id := pos[0]
	c, err := af.client()
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node results: %v\n", err)
		return 1
	}
	g, err := c.Group(ctx, id)
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node results: %v\n", err)
		return 1
	}
	if !g.Done && !*wait {
		fmt.Fprintf(stderr, "aspen-node results: group %s is still running (%d of %d finished); use --wait to wait for it\n",
			id, g.Finished(), g.Tasks)
		return 1
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	st := newStatus(stdout, stderr, "results", *quiet, *bar)
	st.hide = g.Done // nothing to follow
	em, err := newEmitter(stdout, stderr, format, *outDir, g.Tasks, st, stop)
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node results: %v\n", err)
		return 1
	}
	return em.finish(c.Wait(ctx, id, st.update, em.add))
}
