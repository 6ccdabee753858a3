package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/aspen-market/aspen/internal/cli"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// client talks to a running verifier's operator API.
type client struct {
	base  string
	token string
	http  *http.Client
}

// clientFlags locate the operator API: --api/--token, else the
// ASPEN_VERIFIER_API/ASPEN_VERIFIER_TOKEN environment, else the data
// directory's operator.addr and operator.token.
type clientFlags struct {
	data, api, token string
	out              cli.Output
}

func (f *clientFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.data, "data", defaultDataDir(), "the verifier's data directory (for operator.addr and operator.token; env ASPEN_VERIFIER_DATA)")
	fs.StringVar(&f.api, "api", "", "operator API address (default $ASPEN_VERIFIER_API, else DIR/operator.addr)")
	fs.StringVar(&f.token, "token", "", "operator API token (default $ASPEN_VERIFIER_TOKEN, else DIR/operator.token)")
	f.out.Register(cmd)
	f.out.RegisterJSON(cmd)
}

func (f *clientFlags) client() (*client, error) {
	api, token := f.api, f.token
	if api == "" {
		api = os.Getenv("ASPEN_VERIFIER_API")
	}
	if token == "" {
		token = os.Getenv("ASPEN_VERIFIER_TOKEN")
	}
	if api == "" {
		b, err := os.ReadFile(filepath.Join(f.data, verifier.AddrFile))
		if err != nil {
			return nil, fmt.Errorf("no operator API address: pass --api, set ASPEN_VERIFIER_API or start the verifier with --data %s (%v)", f.data, err)
		}
		api = strings.TrimSpace(string(b))
	}
	if token == "" {
		b, err := os.ReadFile(filepath.Join(f.data, verifier.TokenFile))
		if err != nil {
			return nil, fmt.Errorf("no operator token: pass --token, set ASPEN_VERIFIER_TOKEN or use --data (%v)", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if !strings.Contains(api, "://") {
		api = "http://" + api
	}
	return &client{base: strings.TrimRight(api, "/"), token: token, http: &http.Client{Timeout: time.Minute}}, nil
}

// do sends a request and decodes the JSON answer into out (raw gets the
// bytes too).
func (c *client) do(ctx context.Context, method, path string, body any, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach the verifier's operator API at %s (is it running? 'aspen-verifier start'): %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("operator API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			return nil, errors.New("the verifier refused the operator token (check --token, $ASPEN_VERIFIER_TOKEN or DIR/operator.token)")
		case json.Unmarshal(raw, &e) == nil && e.Error != "":
			return nil, errors.New(strings.TrimPrefix(e.Error, "verifier: "))
		}
		return nil, fmt.Errorf("the verifier answered %s", resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("operator API: bad answer: %w", err)
		}
	}
	return raw, nil
}

// opCommand builds an operator command: the common flags, the output
// format checked before anything is asked, then run with a client.
func opCommand(cmd *cobra.Command, cf *clientFlags, validate func([]string) error, run func(ctx context.Context, c *client, args []string, stdout io.Writer) error) *cobra.Command {
	cf.register(cmd)
	cmd.PreRunE = func(_ *cobra.Command, args []string) error {
		if err := cf.out.Validate(); err != nil {
			return err
		}
		if validate != nil {
			return validate(args)
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		return run(cmd.Context(), c, args, cmd.OutOrStdout())
	}
	return cmd
}

// creditResult is what credit prints with --output json or yaml.
type creditResult struct {
	Peer     string `json:"peer" yaml:"peer"`
	Credited string `json:"credited" yaml:"credited"`
	Balance  string `json:"balance" yaml:"balance"`
	Ref      string `json:"ref,omitempty" yaml:"ref,omitempty"`
	// Already: the reference was credited before; nothing changed.
	Already bool `json:"already,omitempty" yaml:"already,omitempty"`
}

func creditCommand() *cobra.Command {
	var cf clientFlags
	var ref string
	var isNew bool
	var amount protocol.Micros
	cmd := &cobra.Command{
		Use:   "credit PEER AMOUNT",
		Short: "credit a consumer: credit PEER AMOUNT (decimal, e.g. 12.50)",
		Long: `Credits a consumer's account with AMOUNT (a payment received off-band). PEER
must be a peer the verifier knows (an account or a registered worker); a
consumer's first credit needs --new, so that a mistyped peer ID is not credited
silently. With --ref the credit is idempotent: crediting the same reference
again changes nothing and says so.`,
		Example: `  aspen-verifier credit 12D3KooW... 10.00 --new --ref invoice-1042
  aspen-verifier credit 12D3KooW... 5 --ref invoice-1043`,
		Args: cli.ExactArgs(2, "PEER AMOUNT"),
	}
	cmd.Flags().StringVar(&ref, "ref", "", "payment reference (idempotency key)")
	cmd.Flags().BoolVar(&isNew, "new", false, "credit a peer the verifier has no account for yet (a new consumer)")
	return opCommand(cmd, &cf, func(args []string) error {
		if _, err := peer.Decode(args[0]); err != nil {
			return cli.Usagef("%q is not a peer ID (want e.g. 12D3KooW..., as 'aspen-node init' prints)", args[0])
		}
		var err error
		if amount, err = protocol.ParseAmount(args[1]); err != nil || amount <= 0 {
			return cli.Usagef("amount %q: want a positive decimal amount such as 12.50", args[1])
		}
		return nil
	}, func(ctx context.Context, c *client, args []string, stdout io.Writer) error {
		p := args[0]
		known, err := c.knownPeer(ctx, p)
		if err != nil {
			return err
		}
		if !known && !isNew {
			return fmt.Errorf("the verifier knows no peer %s (no ledger account, not a registered worker): check the ID, or pass --new to credit a consumer for the first time", p)
		}
		if ref != "" {
			prev, err := c.creditByRef(ctx, p, ref)
			if err != nil {
				return err
			}
			if prev != nil {
				bal, err := c.balance(ctx, "consumer:"+p)
				if err != nil {
					return err
				}
				res := creditResult{Peer: p, Credited: creditAmount(prev, p).String(), Balance: bal.String(), Ref: ref, Already: true}
				return cf.out.Write(stdout, res, func() error {
					_, err := fmt.Fprintf(stdout, "already credited: ref %q credited %s to %s on %s (journal entry %d); nothing changed, balance %s\n",
						ref, res.Credited, p, time.UnixMilli(prev.Time).UTC().Format("2006-01-02 15:04:05 UTC"), prev.Seq, res.Balance)
					return err
				})
			}
		}
		var out creditResult
		if _, err := c.do(ctx, "POST", "/v1/credit", verifier.CreditRequest{Peer: p, Amount: amount.String(), Ref: ref}, &out); err != nil {
			return err
		}
		out.Ref = ref
		return cf.out.Write(stdout, out, func() error {
			_, err := fmt.Fprintf(stdout, "credited %s to %s; balance %s\n", out.Credited, out.Peer, out.Balance)
			return err
		})
	})
}

// knownPeer reports whether the verifier has a ledger account for p or
// lists it as a worker.
func (c *client) knownPeer(ctx context.Context, p string) (bool, error) {
	var accts verifier.AccountsView
	if _, err := c.do(ctx, "GET", "/v1/accounts", nil, &accts); err != nil {
		return false, err
	}
	for _, a := range accts.Accounts {
		if _, id, err := ledger.AccountKind(a.Account); err == nil && id == p {
			return true, nil
		}
	}
	var ws struct {
		Workers []verifier.WorkerInfo `json:"workers"`
	}
	if _, err := c.do(ctx, "GET", "/v1/workers", nil, &ws); err != nil {
		return false, err
	}
	for _, w := range ws.Workers {
		if w.ID == p {
			return true, nil
		}
	}
	return false, nil
}

// creditByRef returns the journal entry of the credit to p with reference
// ref, or nil.
func (c *client) creditByRef(ctx context.Context, p, ref string) (*ledger.JournalEntry, error) {
	want := ledger.CreditPosting(ref, 0, p, 1).ID
	var after uint64
	for {
		q := url.Values{"account": {"consumer:" + p}, "limit": {"10000"}, "after": {fmt.Sprint(after)}}
		var out struct {
			Entries []ledger.JournalEntry `json:"entries"`
		}
		if _, err := c.do(ctx, "GET", "/v1/ledger?"+q.Encode(), nil, &out); err != nil {
			return nil, err
		}
		for i := range out.Entries {
			if out.Entries[i].ID == want {
				return &out.Entries[i], nil
			}
		}
		if len(out.Entries) < 10000 {
			return nil, nil
		}
		after = out.Entries[len(out.Entries)-1].Seq
	}
}

func creditAmount(e *ledger.JournalEntry, p string) protocol.Micros {
	for _, en := range e.Entries {
		if en.Account == "consumer:"+p {
			return en.Amount
		}
	}
	return 0
}

// balance is one account's balance.
func (c *client) balance(ctx context.Context, account string) (protocol.Micros, error) {
	var accts verifier.AccountsView
	if _, err := c.do(ctx, "GET", "/v1/accounts", nil, &accts); err != nil {
		return 0, err
	}
	for _, a := range accts.Accounts {
		if a.Account == account {
			return a.Balance, nil
		}
	}
	return 0, nil
}

func accountsCommand() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{Use: "accounts", Short: "list ledger accounts and balances", Args: cli.NoArgs}
	return opCommand(cmd, &cf, nil, func(ctx context.Context, c *client, _ []string, stdout io.Writer) error {
		var out verifier.AccountsView
		if _, err := c.do(ctx, "GET", "/v1/accounts", nil, &out); err != nil {
			return err
		}
		return cf.out.Write(stdout, out, func() error {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "ACCOUNT\tBALANCE\t")
			for _, a := range out.Accounts {
				fmt.Fprintf(tw, "%s\t%s\t\n", a.Account, a.Balance)
			}
			fmt.Fprintf(tw, "total\t%s\t\n", out.Total)
			return tw.Flush()
		})
	})
}

// ledgerPage is the journal page size by default.
const ledgerPage = 50

func ledgerCommand() *cobra.Command {
	var cf clientFlags
	var account string
	var limit int
	var after uint64
	cmd := &cobra.Command{
		Use:   "ledger [--account PEER|ACCOUNT] [--after SEQ] [--limit N]",
		Short: "show the journal, a page at a time",
		Long: `Shows the ledger's journal in sequence order, a page of --limit postings at a
time (default 50): a full page ends with the command that shows the next one
(--after the last sequence number shown).`,
		Args: cli.NoArgs,
	}
	cmd.Flags().StringVar(&account, "account", "", "a peer ID (all its accounts) or an account (consumer:ID, worker:ID, operator, external)")
	cmd.Flags().IntVar(&limit, "limit", ledgerPage, "postings per page (at most 10000)")
	cmd.Flags().Uint64Var(&after, "after", 0, "show postings after this sequence number")
	return opCommand(cmd, &cf, func([]string) error {
		if limit < 1 || limit > 10000 {
			return cli.Usagef("--limit %d: want 1 to 10000", limit)
		}
		return nil
	}, func(ctx context.Context, c *client, _ []string, stdout io.Writer) error {
		q := url.Values{}
		if account != "" {
			q.Set("account", account)
		}
		q.Set("limit", fmt.Sprint(limit))
		q.Set("after", fmt.Sprint(after))
		var out struct {
			Entries []ledger.JournalEntry `json:"entries"`
		}
		if _, err := c.do(ctx, "GET", "/v1/ledger?"+q.Encode(), nil, &out); err != nil {
			return err
		}
		if out.Entries == nil {
			out.Entries = []ledger.JournalEntry{}
		}
		return cf.out.Write(stdout, out, func() error {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tID\tACCOUNT\tAMOUNT")
			for _, e := range out.Entries {
				ts := time.UnixMilli(e.Time).UTC().Format("2006-01-02 15:04:05")
				for i, en := range e.Entries {
					if i == 0 {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, ts, e.Kind, e.ID, en.Account, en.Amount)
					} else {
						fmt.Fprintf(tw, "\t\t\t\t%s\t%s\n", en.Account, en.Amount)
					}
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(out.Entries) == limit {
				next := []string{"aspen-verifier ledger", "--after", fmt.Sprint(out.Entries[len(out.Entries)-1].Seq)}
				if account != "" {
					next = append(next, "--account", account)
				}
				if limit != ledgerPage {
					next = append(next, "--limit", fmt.Sprint(limit))
				}
				fmt.Fprintf(stdout, "(%d postings shown; more: %s)\n", limit, strings.Join(next, " "))
			}
			return nil
		})
	})
}

func payoutsCommand() *cobra.Command {
	var cf clientFlags
	var threshold, outDir, batch string
	cmd := &cobra.Command{
		Use:   "payouts [--threshold AMOUNT] [--out DIR] [--batch ID]",
		Short: "close a payout batch, write it as CSV and JSON",
		Args:  cli.NoArgs,
	}
	cmd.Flags().StringVar(&threshold, "threshold", "1", "pay every worker whose balance is at least this amount")
	cmd.Flags().StringVar(&outDir, "out", ".", "directory for payout-<batch>.csv and .json")
	cmd.Flags().StringVar(&batch, "batch", "", "batch ID (default: the time); closing the same ID again changes nothing")
	return opCommand(cmd, &cf, func([]string) error {
		if th, err := protocol.ParseAmount(threshold); err != nil || th <= 0 {
			return cli.Usagef("--threshold %q: want a positive decimal amount", threshold)
		}
		return nil
	}, func(ctx context.Context, c *client, _ []string, stdout io.Writer) error {
		var b ledger.Batch
		if _, err := c.do(ctx, "POST", "/v1/payouts", verifier.PayoutRequest{Threshold: threshold, Batch: batch}, &b); err != nil {
			return err
		}
		if err := os.MkdirAll(outDir, 0o700); err != nil {
			return err
		}
		base := filepath.Join(outDir, "payout-"+safeName(b.ID))
		var csvBuf, jsonBuf bytes.Buffer
		if err := ledger.WriteBatchCSV(&csvBuf, b); err != nil {
			return err
		}
		if err := ledger.WriteBatchJSON(&jsonBuf, b); err != nil {
			return err
		}
		if err := os.WriteFile(base+".csv", csvBuf.Bytes(), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(base+".json", jsonBuf.Bytes(), 0o600); err != nil {
			return err
		}
		return cf.out.Write(stdout, b, func() error {
			_, err := fmt.Fprintf(stdout, "batch %s: %d workers, total %s (threshold %s)\nwrote %s.csv and %s.json\n",
				b.ID, len(b.Lines), b.Total, b.Threshold, base, base)
			return err
		})
	})
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r < ' ' {
			return '_'
		}
		return r
	}, s)
}

func workersCommand() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{Use: "workers", Short: "list workers: rating, speed, reliability, strikes, spot checks", Args: cli.NoArgs}
	return opCommand(cmd, &cf, nil, func(ctx context.Context, c *client, _ []string, stdout io.Writer) error {
		var out struct {
			Workers []verifier.WorkerInfo `json:"workers"`
		}
		if _, err := c.do(ctx, "GET", "/v1/workers", nil, &out); err != nil {
			return err
		}
		if out.Workers == nil {
			out.Workers = []verifier.WorkerInfo{}
		}
		return cf.out.Write(stdout, out, func() error {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WORKER\tOWNER\tLIVE\tSPEED\tPRICE/H\tTRUST\tMTTF\tSTRIKES\tSPOT OK/SLOW/WRONG\tDONE\tFAILED\tHELD")
			for _, w := range out.Workers {
				speed := "-"
				if w.Rated {
					speed = w.Speed.String()
				} else if w.Benchmarking {
					speed = "bench…"
				}
				mttf := "-"
				if w.MTTFMillis > 0 {
					mttf = (time.Duration(w.MTTFMillis) * time.Millisecond).Round(time.Second).String()
				}
				live := "no"
				if w.Live {
					live = "yes"
				}
				strikes := fmt.Sprint(w.Strikes)
				if w.StruckOut {
					strikes += " (out)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f%%\t%s\t%s\t%d/%d/%d\t%d\t%d\t%d/%d\n",
					w.ID, w.Owner, live, speed, w.MinPrice, float64(w.ReliabilityPPM)/1e4, mttf, strikes,
					w.SpotChecks.Passed, w.SpotChecks.TooSlow, w.SpotChecks.Wrong, w.Completed, w.Failures, w.Outstanding, w.Capacity)
			}
			return tw.Flush()
		})
	})
}

func groupsCommand() *cobra.Command {
	var cf clientFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "groups [ID] [--all]",
		Short: "list job groups, or one group's tasks",
		Long: `Without ID, lists the open job groups (with --all the closed ones too): each
with its task counts and what its consumer was charged. With ID, shows the
group and every task: state, agreeing replicas, spot check, charge, each
replica's worker and verdict.`,
		Args: cli.MaxArgs(1, "one group ID"),
	}
	cmd.Flags().BoolVar(&all, "all", false, "include closed groups")
	return opCommand(cmd, &cf, nil, func(ctx context.Context, c *client, args []string, stdout io.Writer) error {
		if len(args) == 1 {
			var g verifier.GroupInfo
			if _, err := c.do(ctx, "GET", "/v1/groups/"+url.PathEscape(args[0]), nil, &g); err != nil {
				return err
			}
			return cf.out.Write(stdout, g, func() error {
				fmt.Fprintf(stdout, "group %s consumer %s replicas %d max %s/h charged %s\n", g.ID, g.Consumer, g.Replicas, g.MaxPrice, g.Charged)
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TASK\tSTATE\tAGREED\tCHECKED\tCHARGED\tREPLICAS (worker:verdict)\tREASON")
				for _, t := range g.Tasks {
					var reps []string
					for _, r := range t.Replicas {
						v := r.Verdict
						if v == "" {
							v = r.State
						}
						reps = append(reps, shortID(r.Worker)+":"+v)
					}
					reason := t.Reason
					if reason == "" {
						reason = "-"
					}
					fmt.Fprintf(tw, "%d\t%s\t%d\t%v\t%s\t%s\t%s\n", t.Index, t.State, t.Agreed, t.VerifierRan, t.Charged, strings.Join(reps, " "), reason)
				}
				return tw.Flush()
			})
		}
		path := "/v1/groups"
		if all {
			path += "?all=1"
		}
		var out struct {
			Groups []verifier.GroupInfo `json:"groups"`
		}
		if _, err := c.do(ctx, "GET", path, nil, &out); err != nil {
			return err
		}
		if out.Groups == nil {
			out.Groups = []verifier.GroupInfo{}
		}
		return cf.out.Write(stdout, out, func() error {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tCONSUMER\tCREATED\tOPEN\tTASKS\tCHARGED")
			for _, g := range out.Groups {
				var counts []string
				for k, n := range g.Counts {
					counts = append(counts, fmt.Sprintf("%s=%d", k, n))
				}
				sort.Strings(counts)
				tasks := strings.Join(counts, " ")
				if tasks == "" {
					tasks = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", g.ID, shortID(g.Consumer), time.UnixMilli(g.Created).UTC().Format(time.DateTime), g.Open, tasks, g.Charged)
			}
			return tw.Flush()
		})
	})
}

func shortID(s string) string {
	if len(s) > 10 {
		return "…" + s[len(s)-8:]
	}
	return s
}
