package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/protocol"
)

func init() {
	register("balance", command{summary: "show the verifier's signed statement of this node's account", run: cmdBalance})
}

func cmdBalance(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("balance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af apiFlags
	af.register(fs)
	asJSON := fs.Bool("json", false, "print the statement as JSON (amounts in micro-units)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: aspen-node balance [--json] [--api URL] [--token T] [--data DIR]\n\n"+
			"Asks the verifier, through the local node, for the node's account statement:\n"+
			"a consumer's balance, escrow and spending; a worker's earnings, pending payout,\n"+
			"payouts, strikes and rating. Amounts are in currency units.\n\nflags:\n")
		fs.PrintDefaults()
	}
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "aspen-node balance: unexpected argument %q\n", pos[0])
		return 2
	}
	c, err := af.client()
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node balance: %v\n", err)
		return 1
	}
	st, err := c.Balance(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node balance: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			fmt.Fprintf(stderr, "aspen-node balance: %v\n", err)
			return 1
		}
		return 0
	}
	info, err := c.Info(ctx)
	if err != nil {
		info = &client.Info{Role: "both"} // show every section
	}
	printStatement(stdout, st, info)
	return 0
}

// printStatement writes st for people: the consumer section when the node
// buys, the worker section when it sells.
func printStatement(w io.Writer, st *client.Statement, info *client.Info) {
	row := func(label string, v any) { fmt.Fprintf(w, "  %-18s %14v\n", label, v) }
	issued := "unknown time"
	if st.Issued > 0 {
		issued = time.UnixMilli(st.Issued).UTC().Format("2006-01-02 15:04:05 UTC")
	}
	fmt.Fprintf(w, "Statement for %s, signed by the verifier at %s\n", st.Peer, issued)
	consumer, worker := info.Role != "worker", info.Role != "consumer"
	if consumer {
		fmt.Fprintln(w, "Consumer")
		row("available balance", st.Balance)
		row("held in escrow", st.Escrow)
		row("spent", st.Spent)
	}
	if worker {
		fmt.Fprintln(w, "Worker")
		row("earned", st.Earned)
		row("pending payout", st.Pending)
		row("paid out", st.PaidOut)
		row("strikes", st.Strikes)
		r, signer, err := st.OpenRating()
		switch {
		case err != nil:
			fmt.Fprintf(w, "  rating: unreadable (%v)\n", err)
		case r != nil && info.Verifier != "" && signer != info.Verifier:
			fmt.Fprintf(w, "  rating: signed by %s, not by the verifier %s: ignored\n", signer, info.Verifier)
		case r != nil:
			fmt.Fprintf(w, "  rating: %s\n", ratingLine(r))
		case info.Rating != nil:
			fmt.Fprintf(w, "  rating: %s\n", ratingLine(info.Rating))
		default:
			fmt.Fprintln(w, "  rating: not rated yet (the verifier benchmarks a worker when it registers)")
		}
	}
}

func ratingLine(r *protocol.Rating) string {
	s := fmt.Sprintf("speed %s, reliability %.1f%%, %d strikes", r.Speed, float64(r.ReliabilityPPM)/1e4, r.Strikes)
	if r.Expires > 0 {
		s += ", valid until " + time.UnixMilli(r.Expires).UTC().Format("2006-01-02 15:04 UTC")
	}
	return s
}
