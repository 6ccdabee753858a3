package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
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

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier"
	"github.com/aspen-market/aspen/verifier/ledger"
)

func init() {
	register("credit", command{summary: "credit a consumer: credit PEER AMOUNT", run: cmdCredit})
	register("accounts", command{summary: "list ledger accounts and balances", run: cmdAccounts})
	register("ledger", command{summary: "show the journal [--account PEER|ACCOUNT]", run: cmdLedger})
	register("payouts", command{summary: "close a payout batch, write it as CSV and JSON", run: cmdPayouts})
	register("workers", command{summary: "list workers: rating, speed, reliability, strikes, spot checks", run: cmdWorkers})
	register("groups", command{summary: "list job groups, or one group's tasks: groups [ID]", run: cmdGroups})
}

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
	json             bool
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.data, "data", defaultDataDir(), "the verifier's data directory (for operator.addr and operator.token)")
	fs.StringVar(&f.api, "api", os.Getenv("ASPEN_VERIFIER_API"), "operator API address (env ASPEN_VERIFIER_API)")
	fs.StringVar(&f.token, "token", os.Getenv("ASPEN_VERIFIER_TOKEN"), "operator API token (env ASPEN_VERIFIER_TOKEN)")
	fs.BoolVar(&f.json, "json", false, "print the API's JSON")
}

func (f *clientFlags) client() (*client, error) {
	api, token := f.api, f.token
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
		return nil, fmt.Errorf("operator API: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("operator API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("operator API: %s: %s", resp.Status, e.Error)
		}
		return nil, fmt.Errorf("operator API: %s", resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("operator API: bad answer: %w", err)
		}
	}
	return raw, nil
}

// opCommand parses the common flags and runs f with a client.
func opCommand(name, usageLine string, args []string, stdout, stderr io.Writer, extra func(fs *flag.FlagSet), f func(c *client, fs *flag.FlagSet, jsonOut bool) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: aspen-verifier %s\n", usageLine)
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c, err := cf.client()
	if err == nil {
		err = f(c, fs, cf.json)
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, "aspen-verifier:", name+":", err)
			fs.Usage()
			return 2
		}
		fmt.Fprintln(stderr, "aspen-verifier:", name+":", err)
		return 1
	}
	return 0
}

type usageError string

func (e usageError) Error() string { return string(e) }

func cmdCredit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var ref string
	return opCommand("credit", "credit [flags] PEER AMOUNT   (AMOUNT is decimal, e.g. 12.50)", args, stdout, stderr,
		func(fs *flag.FlagSet) { fs.StringVar(&ref, "ref", "", "payment reference (idempotency key)") },
		func(c *client, fs *flag.FlagSet, jsonOut bool) error {
			if fs.NArg() != 2 {
				return usageError("want PEER AMOUNT")
			}
			amount, err := protocol.ParseAmount(fs.Arg(1))
			if err != nil || amount <= 0 {
				return fmt.Errorf("amount %q: want a positive decimal amount such as 12.50", fs.Arg(1))
			}
			var out struct {
				Peer     string `json:"peer"`
				Credited string `json:"credited"`
				Balance  string `json:"balance"`
			}
			raw, err := c.do(ctx, "POST", "/v1/credit", verifier.CreditRequest{Peer: fs.Arg(0), Amount: amount.String(), Ref: ref}, &out)
			if err != nil {
				return err
			}
			if jsonOut {
				_, err = stdout.Write(raw)
				return err
			}
			fmt.Fprintf(stdout, "credited %s to %s; balance %s\n", out.Credited, out.Peer, out.Balance)
			return nil
		})
}

func cmdAccounts(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return opCommand("accounts", "accounts [flags]", args, stdout, stderr, nil, func(c *client, fs *flag.FlagSet, jsonOut bool) error {
		var out verifier.AccountsView
		raw, err := c.do(ctx, "GET", "/v1/accounts", nil, &out)
		if err != nil {
			return err
		}
		if jsonOut {
			_, err = stdout.Write(raw)
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "ACCOUNT\tBALANCE\t")
		for _, a := range out.Accounts {
			fmt.Fprintf(tw, "%s\t%s\t\n", a.Account, a.Balance)
		}
		fmt.Fprintf(tw, "total\t%s\t\n", out.Total)
		return tw.Flush()
	})
}

func cmdLedger(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var account string
	var limit int
	return opCommand("ledger", "ledger [--account PEER|ACCOUNT] [--limit N]", args, stdout, stderr,
		func(fs *flag.FlagSet) {
			fs.StringVar(&account, "account", "", "a peer ID (all its accounts) or an account (consumer:ID, worker:ID, operator, external)")
			fs.IntVar(&limit, "limit", 1000, "at most this many postings")
		},
		func(c *client, fs *flag.FlagSet, jsonOut bool) error {
			q := url.Values{}
			if account != "" {
				q.Set("account", account)
			}
			q.Set("limit", fmt.Sprint(limit))
			var out struct {
				Entries []ledger.JournalEntry `json:"entries"`
			}
			raw, err := c.do(ctx, "GET", "/v1/ledger?"+q.Encode(), nil, &out)
			if err != nil {
				return err
			}
			if jsonOut {
				_, err = stdout.Write(raw)
				return err
			}
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
			return tw.Flush()
		})
}

func cmdPayouts(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var threshold, out, batch string
	return opCommand("payouts", "payouts [--threshold AMOUNT] [--out DIR] [--batch ID]", args, stdout, stderr,
		func(fs *flag.FlagSet) {
			fs.StringVar(&threshold, "threshold", "1", "pay every worker whose balance is at least this amount")
			fs.StringVar(&out, "out", ".", "directory for payout-<batch>.csv and .json")
			fs.StringVar(&batch, "batch", "", "batch ID (default: the time); closing the same ID again changes nothing")
		},
		func(c *client, fs *flag.FlagSet, jsonOut bool) error {
			if th, err := protocol.ParseAmount(threshold); err != nil || th <= 0 {
				return fmt.Errorf("threshold %q: want a positive decimal amount", threshold)
			}
			var b ledger.Batch
			raw, err := c.do(ctx, "POST", "/v1/payouts", verifier.PayoutRequest{Threshold: threshold, Batch: batch}, &b)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			base := filepath.Join(out, "payout-"+safeName(b.ID))
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
			if jsonOut {
				_, err = stdout.Write(raw)
				return err
			}
			fmt.Fprintf(stdout, "batch %s: %d workers, total %s (threshold %s)\nwrote %s.csv and %s.json\n",
				b.ID, len(b.Lines), b.Total, b.Threshold, base, base)
			return nil
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

func cmdWorkers(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return opCommand("workers", "workers [flags]", args, stdout, stderr, nil, func(c *client, fs *flag.FlagSet, jsonOut bool) error {
		var out struct {
			Workers []verifier.WorkerInfo `json:"workers"`
		}
		raw, err := c.do(ctx, "GET", "/v1/workers", nil, &out)
		if err != nil {
			return err
		}
		if jsonOut {
			_, err = stdout.Write(raw)
			return err
		}
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
}

func cmdGroups(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var all bool
	return opCommand("groups", "groups [--all] [ID]", args, stdout, stderr,
		func(fs *flag.FlagSet) { fs.BoolVar(&all, "all", false, "include finished groups") },
		func(c *client, fs *flag.FlagSet, jsonOut bool) error {
			if fs.NArg() == 1 {
				var g verifier.GroupInfo
				raw, err := c.do(ctx, "GET", "/v1/groups/"+url.PathEscape(fs.Arg(0)), nil, &g)
				if err != nil {
					return err
				}
				if jsonOut {
					_, err = stdout.Write(raw)
					return err
				}
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
					fmt.Fprintf(tw, "%d\t%s\t%d\t%v\t%s\t%s\t%s\n", t.Index, t.State, t.Agreed, t.VerifierRan, t.Charged, strings.Join(reps, " "), t.Reason)
				}
				return tw.Flush()
			}
			path := "/v1/groups"
			if all {
				path += "?all=1"
			}
			var out struct {
				Groups []verifier.GroupInfo `json:"groups"`
			}
			raw, err := c.do(ctx, "GET", path, nil, &out)
			if err != nil {
				return err
			}
			if jsonOut {
				_, err = stdout.Write(raw)
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tCONSUMER\tCREATED\tOPEN\tTASKS")
			for _, g := range out.Groups {
				var counts []string
				for k, n := range g.Counts {
					counts = append(counts, fmt.Sprintf("%s=%d", k, n))
				}
				sort.Strings(counts)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", g.ID, shortID(g.Consumer), time.UnixMilli(g.Created).UTC().Format(time.DateTime), g.Open, strings.Join(counts, " "))
			}
			return tw.Flush()
		})
}

func shortID(s string) string {
	if len(s) > 10 {
		return "…" + s[len(s)-8:]
	}
	return s
}
