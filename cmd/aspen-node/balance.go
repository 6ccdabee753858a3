package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/internal/cli"
	"github.com/aspen-market/aspen/protocol"
)

func balanceCommand() *cobra.Command {
	var af apiFlags
	var out cli.Output
	cmd := &cobra.Command{
		Use:   "balance",
		Short: "show the verifier's signed statement of this node's account",
		Long: `Asks the verifier, through the local node, for the node's account statement:
a consumer's balance, escrow and spending; a worker's earnings, pending payout,
payouts, strikes and rating. Amounts are in currency units (micro-units in
--output json and yaml).`,
		Args: cli.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			return out.Validate()
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stdout := cmd.Context(), cmd.OutOrStdout()
			c, err := af.client()
			if err != nil {
				return userErr(err)
			}
			st, err := c.Balance(ctx)
			if err != nil {
				return userErr(err)
			}
			return out.Write(stdout, st, func() error {
				info, err := c.Info(ctx)
				if err != nil {
					info = &client.Info{Role: "both"} // show every section
				}
				printStatement(stdout, st, info)
				return nil
			})
		},
	}
	af.register(cmd.Flags())
	out.Register(cmd)
	out.RegisterJSON(cmd)
	return cmd
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
		r, signer, err := openRating(st)
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

// openRating checks the signature of the statement's sealed rating and
// returns it with its signer's peer ID (which should be the verifier's); nil,
// "", nil when there is none.
func openRating(st *client.Statement) (*client.Rating, string, error) {
	if len(st.Rating) == 0 {
		return nil, "", nil
	}
	var r protocol.Rating
	signer, err := protocol.OpenAs(st.Rating, &r)
	if err != nil {
		return nil, "", err
	}
	return &client.Rating{Worker: r.Worker.String(), Speed: r.Speed, ReliabilityPPM: r.ReliabilityPPM, Strikes: r.Strikes,
		Issued: r.Issued, Expires: r.Expires}, signer.String(), nil
}

func ratingLine(r *client.Rating) string {
	s := fmt.Sprintf("speed %s, reliability %.1f%%, %d strikes", r.Speed, float64(r.ReliabilityPPM)/1e4, r.Strikes)
	if r.Expires > 0 {
		s += ", valid until " + time.UnixMilli(r.Expires).UTC().Format("2006-01-02 15:04 UTC")
	}
	return s
}
