package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// verdict describes how the verifier judged one task: replicas that agreed,
// whether the verifier ran it itself (spot-check), and who was not paid.
func (d *devnet) verdict(groupID string, index int) string {
	g, ok := d.group(groupID)
	if !ok || index >= len(g.Tasks) {
		return "?"
	}
	t := g.Tasks[index]
	s := fmt.Sprintf("%s %d/%d", t.State, t.Agreed, len(t.Replicas))
	if t.SpotChecked {
		s += " +spot"
	}
	unpaid := 0
	for _, r := range t.Replicas {
		if r.Verdict != "" && r.Verdict != "paid" {
			unpaid++
		}
	}
	if unpaid > 0 {
		s += fmt.Sprintf(" (%d unpaid)", unpaid)
	}
	return s
}

func (d *devnet) group(id string) (verifier.GroupInfo, bool) {
	gid, err := protocol.ParseID(id)
	if err != nil {
		return verifier.GroupInfo{}, false
	}
	g, err := d.verifier.Group(gid)
	return g, err == nil
}

// printLedger prints every account with a friendly name, the journal
// totals, and whether the ledger balances (sums to zero).
func (d *devnet) printLedger(ctx context.Context, w io.Writer) error {
	names := map[string]string{d.consumer.ID().String(): "consumer"}
	for i, n := range d.workers {
		names[n.ID().String()] = fmt.Sprintf("worker-%d", i+1)
	}
	accts, err := d.verifier.Accounts()
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "ledger (double-entry; amounts in currency units):")
	var total protocol.Micros
	for _, a := range accts {
		kind, p, err := ledger.AccountKind(a.Account)
		label := a.Account
		if err == nil && p != "" {
			label = kind + ":" + names[p]
			if names[p] == "" {
				label = kind + ":" + short(p)
			}
		}
		fmt.Fprintf(w, "  %-22s %14s\n", label, a.Balance)
		total += a.Balance
	}
	var charged, cut, paid, refunded protocol.Micros
	entries, err := d.verifier.Journal(ledger.JournalFilter{})
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Kind, "settle") {
			continue
		}
		for _, x := range e.Entries {
			k, _, _ := ledger.AccountKind(x.Account)
			switch {
			case k == "worker" && x.Amount > 0:
				paid += x.Amount
			case x.Account == ledger.Operator && x.Amount > 0:
				cut += x.Amount
			case k == "consumer" && x.Amount > 0:
				refunded += x.Amount
			}
		}
	}
	charged = paid + cut
	fmt.Fprintf(w, "  %-22s %14s\n", "sum of all accounts", total)
	fmt.Fprintf(w, "consumer charged %s: workers paid %s, operator's cut %s; escrow refunded %s; %d journal entries\n",
		charged, paid, cut, refunded, len(entries))
	if total != 0 {
		return fmt.Errorf("ledger does not balance: accounts sum to %s", total)
	}
	if err := d.verifier.Ledger().Check(); err != nil {
		return fmt.Errorf("ledger check: %w", err)
	}
	fmt.Fprintln(w, "ledger balanced: money was neither created nor lost")
	return nil
}
