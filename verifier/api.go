package verifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aspen-market/aspen/internal/apitoken"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier/dashboard"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// LoadOrCreateToken reads the operator token file, creating a random one
// (mode 0600) when it does not exist.
func LoadOrCreateToken(path string) (string, error) { return apitoken.LoadOrCreate(path) }

func (v *Verifier) startAPI() error {
	ln, err := net.Listen("tcp", v.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("verifier: operator API listen: %w", err)
	}
	v.apiAddr = ln.Addr().String()
	if err := os.WriteFile(filepath.Join(v.cfg.DataDir, AddrFile), []byte(v.apiAddr+"\n"), 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("verifier: %w", err)
	}
	v.api = &http.Server{Handler: v.Handler(), ReadHeaderTimeout: 10 * time.Second}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		if err := v.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			v.log.Error("operator API", "err", err)
		}
	}()
	return nil
}

// Handler is the operator API (JSON under /v1, bearer token required) and
// GET /metrics when Config.MetricsHandler is set.
func (v *Verifier) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", v.apiInfo)
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, v.Stats()) })
	mux.HandleFunc("GET /v1/workers", v.apiWorkers)
	mux.HandleFunc("GET /v1/accounts", v.apiAccounts)
	mux.HandleFunc("GET /v1/ledger", v.apiLedger)
	mux.HandleFunc("POST /v1/credit", v.apiCredit)
	mux.HandleFunc("POST /v1/payouts", v.apiPayout)
	mux.HandleFunc("GET /v1/payouts", v.apiBatches)
	mux.HandleFunc("GET /v1/groups", v.apiGroups)
	mux.HandleFunc("GET /v1/groups/{id}", v.apiGroup)
	authed := v.requireToken(mux)
	ui := dashboard.Handler()
	metrics := v.cfg.MetricsHandler
	if metrics == nil {
		metrics = v.metricsHandler()
	}
	// /v1 needs the token; /metrics is for Prometheus on loopback; every
	// other path is the operator dashboard's static files, whose pages
	// fetch /v1 with the token the operator signs in with.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/v1/"):
			authed.ServeHTTP(w, r)
		case r.URL.Path == "/metrics":
			metrics.ServeHTTP(w, r)
		default:
			ui.ServeHTTP(w, r)
		}
	})
}

func (v *Verifier) requireToken(next http.Handler) http.Handler {
	return apitoken.Require(v.token, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (see operator.token)")
	}, next)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// Info is GET /v1/info.
type Info struct {
	Peer      string   `json:"peer"`
	Addrs     []string `json:"addrs"`
	Workers   int      `json:"workers"`
	Groups    int      `json:"groups"`
	OpenTasks int      `json:"open_tasks"`
	Queued    int      `json:"queued"`
}

// Info returns the verifier's identity and counters.
func (v *Verifier) Info() Info {
	in := Info{Peer: v.id.String()}
	for _, a := range v.Addrs() {
		in.Addrs = append(in.Addrs, a.String()+"/p2p/"+v.id.String())
	}
	v.mu.Lock()
	in.Workers, in.Groups, in.OpenTasks, in.Queued = len(v.workers), len(v.groups), v.openTasks, len(v.queued)
	v.mu.Unlock()
	return in
}

func (v *Verifier) apiInfo(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, v.Info()) }

func (v *Verifier) apiWorkers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{"workers": v.Workers()})
}

// AccountsView is GET /v1/accounts.
type AccountsView struct {
	Accounts []AccountView   `json:"accounts"`
	Total    protocol.Micros `json:"total"` // always 0
}

// AccountView is one account with its balance as a decimal string too.
type AccountView struct {
	Account string          `json:"account"`
	Balance protocol.Micros `json:"balance_micros"`
	Amount  string          `json:"balance"`
}

func (v *Verifier) apiAccounts(w http.ResponseWriter, r *http.Request) {
	bs, err := v.led.Balances()
	if err != nil {
		writeError(w, 500, err.Error())
		return
	}
	out := AccountsView{Accounts: []AccountView{}}
	for _, b := range bs {
		out.Accounts = append(out.Accounts, AccountView{Account: b.Account, Balance: b.Balance, Amount: b.Balance.String()})
		out.Total += b.Balance
	}
	writeJSON(w, 200, out)
}

// apiLedger is GET /v1/ledger?account=&limit=&after=: the journal, of one
// account ("consumer:ID", "operator", ...) or of every account of a peer
// (a bare peer ID).
func (v *Verifier) apiLedger(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	acct := strings.TrimSpace(q.Get("account"))
	var accts []string
	switch {
	case acct == "":
		accts = []string{""}
	case strings.Contains(acct, ":") || acct == ledger.External || acct == ledger.Operator:
		accts = []string{acct}
	default:
		accts = []string{acctConsumer(acct), acctEscrow(acct), acctWorker(acct)}
	}
	seen := map[uint64]bool{}
	out := []ledger.JournalEntry{}
	for _, a := range accts {
		js, err := v.led.Journal(ledger.JournalFilter{Account: a, After: after, Limit: limit})
		if err != nil {
			writeError(w, 400, err.Error())
			return
		}
		for _, e := range js {
			if !seen[e.Seq] {
				seen[e.Seq] = true
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, func(a, b ledger.JournalEntry) int { return int(a.Seq) - int(b.Seq) })
	if len(out) > limit {
		out = out[:limit]
	}
	writeJSON(w, 200, map[string]any{"entries": out})
}

// CreditRequest is POST /v1/credit.
type CreditRequest struct {
	Peer   string `json:"peer"`
	Amount string `json:"amount"` // decimal currency amount, e.g. "12.50"
	Ref    string `json:"ref,omitempty"`
}

func (v *Verifier) apiCredit(w http.ResponseWriter, r *http.Request) {
	var req CreditRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, 400, "bad JSON: "+err.Error())
		return
	}
	p := peerID(strings.TrimSpace(req.Peer))
	if p == "" {
		writeError(w, 400, fmt.Sprintf("bad peer ID %q", req.Peer))
		return
	}
	amount, err := protocol.ParseAmount(req.Amount)
	if err != nil || amount <= 0 {
		writeError(w, 400, fmt.Sprintf("bad amount %q: want a positive decimal amount such as 12.50", req.Amount))
		return
	}
	if err := v.Credit(r.Context(), p, amount, req.Ref); err != nil {
		writeError(w, 400, err.Error())
		return
	}
	bal, _ := v.led.Balance(acctConsumer(p.String()))
	writeJSON(w, 200, map[string]any{"peer": p.String(), "credited": amount.String(), "balance": bal.String(), "balance_micros": bal})
}

// PayoutRequest is POST /v1/payouts.
type PayoutRequest struct {
	Threshold string `json:"threshold"` // decimal; default "1"
	Batch     string `json:"batch,omitempty"`
}

func (v *Verifier) apiPayout(w http.ResponseWriter, r *http.Request) {
	var req PayoutRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, 400, "bad JSON: "+err.Error())
		return
	}
	if req.Threshold == "" {
		req.Threshold = "1"
	}
	th, err := protocol.ParseAmount(req.Threshold)
	if err != nil || th <= 0 {
		writeError(w, 400, fmt.Sprintf("bad threshold %q", req.Threshold))
		return
	}
	b, err := v.Payout(r.Context(), th, req.Batch)
	if err != nil {
		writeError(w, 400, err.Error())
		return
	}
	writeJSON(w, 200, b)
}

func (v *Verifier) apiBatches(w http.ResponseWriter, r *http.Request) {
	bs, err := v.led.Batches()
	if err != nil {
		writeError(w, 500, err.Error())
		return
	}
	if bs == nil {
		bs = []ledger.Batch{}
	}
	writeJSON(w, 200, map[string]any{"batches": bs})
}

func (v *Verifier) apiGroups(w http.ResponseWriter, r *http.Request) {
	gs, err := v.Groups(r.URL.Query().Get("all") != "")
	if err != nil {
		writeError(w, 500, err.Error())
		return
	}
	if gs == nil {
		gs = []GroupInfo{}
	}
	writeJSON(w, 200, map[string]any{"groups": gs})
}

func (v *Verifier) apiGroup(w http.ResponseWriter, r *http.Request) {
	id, err := protocol.ParseID(r.PathValue("id"))
	if err != nil {
		writeError(w, 400, err.Error())
		return
	}
	g, err := v.Group(id)
	if errors.Is(err, ErrNotFound) {
		writeError(w, 404, err.Error())
		return
	}
	if err != nil {
		writeError(w, 500, err.Error())
		return
	}
	writeJSON(w, 200, g)
}
