package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/protocol"
)

// apiDouble emulates the node's local HTTP API (node/api.go) for the
// command tests: every poll (a status request, or a results request by
// cursor) finishes the next task of a group; tasks finish in input order.
// Input "exit:N" exits N with stderr "bad input N\ndetail"; "nowork" is
// failed by the verifier; anything else exits 0 printing the input
// upper-cased with a newline.
type apiDouble struct {
	srv *httptest.Server

	mu       sync.Mutex
	blobs    map[string][]byte
	groups   []*dGroup
	cancels  int
	onPoll   func(finished int) // called unlocked before answering each poll
	stmt     string             // GET /v1/balance body
	role     string
	verifier string // peer ID in GET /v1/info
}

type dGroup struct {
	g     client.Group
	res   []client.TaskResult
	next  int
	names string
}

const dToken = "test-token-0123456789"

func newAPIDouble(t *testing.T) *apiDouble {
	d := &apiDouble{blobs: map[string][]byte{}, role: "consumer", verifier: "12D3KooWVerifier",
		stmt: `{"Peer":"12D3KooWMe","Balance":12500000,"Escrow":400000,"Spent":3210000,"Earned":1500000,"Pending":250000,"PaidOut":1250000,"Strikes":2,"Issued":1700000000000}`}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	group := func(w http.ResponseWriter, r *http.Request) *dGroup {
		for _, g := range d.groups {
			if g.g.ID == r.PathValue("id") {
				return g
			}
		}
		reply(w, 404, map[string]string{"error": "node: unknown job group"})
		return nil
	}
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		reply(w, 200, client.Info{PeerID: "12D3KooWMe", Role: d.role, Verifier: d.verifier})
	})
	mux.HandleFunc("GET /v1/balance", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		io.WriteString(w, d.stmt)
	})
	mux.HandleFunc("POST /v1/blobs", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c := protocol.BlobCID(b).String()
		d.mu.Lock()
		d.blobs[c] = b
		d.mu.Unlock()
		reply(w, 201, map[string]any{"cid": c, "size": len(b)})
	})
	mux.HandleFunc("POST /v1/groups", func(w http.ResponseWriter, r *http.Request) {
		var req client.SubmitRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			reply(w, 400, map[string]string{"error": err.Error()})
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if _, ok := d.blobs[req.Module]; !ok {
			reply(w, 400, map[string]string{"error": "node: bad request: module not uploaded"})
			return
		}
		g := &dGroup{g: client.Group{ID: fmt.Sprintf("%032x", len(d.groups)+1), Name: req.Name, Module: req.Module,
			Tasks: len(req.Inputs), Submitted: len(req.Inputs), Replicas: 2, Created: 1700000000000, State: "running"}}
		for i, in := range req.Inputs {
			data := in.Data
			if in.CID != "" {
				data = d.blobs[in.CID]
			}
			s := string(data)
			tr := client.TaskResult{Index: uint32(i), State: client.StateVerified, Status: client.StatusOK,
				Stdout: append(bytes.ToUpper(data), '\n'), Charged: 10}
			switch {
			case strings.HasPrefix(s, "exit:"):
				n, _ := strconv.Atoi(s[5:])
				tr.Status, tr.ExitCode, tr.Stdout, tr.Stderr = client.StatusExit, uint32(n), nil, []byte(fmt.Sprintf("bad input %d\ndetail\n", n))
			case s == "nowork":
				tr = client.TaskResult{Index: uint32(i), State: client.StateFailed, Reason: "no eligible workers"}
			}
			g.res = append(g.res, tr)
		}
		g.g.Pending = len(req.Inputs)
		d.groups = append(d.groups, g)
		reply(w, 201, client.SubmitResponse{ID: g.g.ID, Status: g.g})
	})
	mux.HandleFunc("GET /v1/groups", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		out := []client.Group{}
		for i := len(d.groups) - 1; i >= 0; i-- {
			out = append(out, d.groups[i].g)
		}
		reply(w, 200, out)
	})
	mux.HandleFunc("GET /v1/groups/{id}", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		g := group(w, r)
		if g == nil {
			d.mu.Unlock()
			return
		}
		g.poll()
		st, hook := g.g, d.onPoll
		d.mu.Unlock()
		if hook != nil {
			hook(st.Finished())
		}
		reply(w, 200, st)
	})
	mux.HandleFunc("GET /v1/groups/{id}/tasks", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		g := group(w, r)
		if g == nil {
			return
		}
		out := []client.Task{}
		for i, tr := range g.entries() {
			t := client.Task{Index: uint32(i), State: tr.State, Reason: tr.Reason, ExitCode: tr.ExitCode, Charged: tr.Charged}
			if tr.Status == client.StatusExit {
				t.Status, t.Replicas = client.JobStatus(protocol.StatusExit), 2
			}
			out = append(out, t)
		}
		reply(w, 200, out)
	})
	mux.HandleFunc("GET /v1/groups/{id}/results", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("since") {
			// A poll, then what finished after the cursor: tasks finish
			// in input order, so task i has finish number i+1.
			since, err := strconv.Atoi(r.URL.Query().Get("since"))
			d.mu.Lock()
			g := group(w, r)
			if g == nil {
				d.mu.Unlock()
				return
			}
			g.poll()
			if err != nil || since < 0 || since > g.next {
				d.mu.Unlock()
				reply(w, 400, map[string]string{"error": "node: bad request: bad cursor"})
				return
			}
			page := client.ResultsPage{Results: g.entries()[since:g.next], Next: strconv.Itoa(g.next), Group: g.g}
			for i := range page.Results {
				page.Results[i].Seq = uint32(since + i + 1)
			}
			page.Done = g.next == len(g.res)
			hook := d.onPoll
			d.mu.Unlock()
			if hook != nil {
				hook(page.Group.Finished())
			}
			reply(w, 200, page)
			return
		}
		from, _ := strconv.Atoi(r.URL.Query().Get("from"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		d.mu.Lock()
		defer d.mu.Unlock()
		g := group(w, r)
		if g == nil {
			return
		}
		out := []client.TaskResult{}
		for _, e := range g.entries()[min(from, len(g.res)):] {
			if len(out) == limit {
				break
			}
			out = append(out, e)
		}
		reply(w, 200, out)
	})
	mux.HandleFunc("POST /v1/groups/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		g := group(w, r)
		if g == nil {
			return
		}
		d.cancels++
		for i := g.next; i < len(g.res); i++ {
			g.finish(i, client.TaskResult{Index: uint32(i), State: client.StateCanceled, Reason: "canceled"})
		}
		g.next = len(g.res)
		reply(w, 200, g.g)
	})
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+dToken {
			reply(w, 401, map[string]string{"error": "missing or wrong API token"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(d.srv.Close)
	// Poll fast: the commands use the client's default interval otherwise.
	return d
}

// poll finishes the next task of a running group.
func (g *dGroup) poll() {
	if g.next < len(g.res) && g.g.State == "running" {
		g.finish(g.next, g.res[g.next])
		g.next++
	}
}

// finish records task i's final entry and updates the counts.
func (g *dGroup) finish(i int, tr client.TaskResult) {
	g.res[i] = tr
	g.g.Pending--
	switch tr.State {
	case client.StateVerified:
		g.g.Verified++
	case client.StateFailed:
		g.g.Failed++
	case client.StateCanceled:
		g.g.Canceled++
	}
	g.g.Spent += tr.Charged
	if g.g.Pending == 0 {
		g.g.Done, g.g.State = true, "verified"
		if g.g.Failed+g.g.Canceled > 0 {
			g.g.State = "finished with failures"
		}
	}
}

// entries is the results as the API shows them.
func (g *dGroup) entries() []client.TaskResult {
	out := make([]client.TaskResult, len(g.res))
	for i, tr := range g.res {
		if i >= g.next && tr.State != client.StateCanceled {
			tr = client.TaskResult{Index: uint32(i), State: client.StatePending}
		}
		out[i] = tr
	}
	return out
}

func (d *apiDouble) args(extra ...string) []string {
	return append([]string{"--api", d.srv.URL, "--token", dToken}, extra...)
}

// runCmd runs a command and returns its exit status, stdout and stderr.
func runCmd(ctx context.Context, run func(context.Context, []string, io.Reader, io.Writer, io.Writer) int, args []string, stdin string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var parseDur = time.ParseDuration

func TestReadJSONLInputs(t *testing.T) {
	in := "\"hello\"\n\n{\"data\": \"AAEC\"}\r\n  {\"text\": \"a\\nb\"}  \n\"\"\n{\"data\":\"\"}"
	got, err := readJSONLInputs(strings.NewReader(in))
	want := [][]byte{[]byte("hello"), {0, 1, 2}, []byte("a\nb"), {}, {}}
	if err != nil || len(got) != len(want) {
		t.Fatalf("readJSONLInputs = %q, %v", got, err)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("input %d = %q, want %q", i, got[i], want[i])
		}
	}
	for bad, msg := range map[string]string{
		"\"ok\"\n{\"blob\": \"x\"}":            "line 2",
		"{\"data\": \"not base64!\"}":          "not base64",
		"{\"data\": \"AA==\", \"text\": \"\"}": "both",
		"42":                                   "line 1",
		"{}":                                   "want a JSON string",
		"\"unterminated":                       "line 1",
	} {
		if _, err := readJSONLInputs(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("readJSONLInputs(%q) = %v, want an error mentioning %q", bad, err, msg)
		}
	}
}

func TestReadLineInputs(t *testing.T) {
	for in, want := range map[string][]string{
		"a\nb\r\n\nc":   {"a", "b", "", "c"},
		"a\nb\n":        {"a", "b"},
		"":              nil,
		"\n":            {""},
		"one long line": {"one long line"},
	} {
		got, err := readLineInputs(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		var gs []string
		for _, g := range got {
			gs = append(gs, string(g))
		}
		if !reflect.DeepEqual(gs, want) {
			t.Errorf("readLineInputs(%q) = %q, want %q", in, gs, want)
		}
	}
}

func TestMapCommand(t *testing.T) {
	d := newAPIDouble(t)
	dir := t.TempDir()
	mod := writeFile(t, dir, "m.wasm", "\x00asm module")
	lines := writeFile(t, dir, "in.txt", "alpha\nexit:3\nbeta\nnowork\ngamma\n")
	code, out, errs := runCmd(context.Background(), cmdMap,
		d.args(mod, "--lines", lines, "--max-price", "0.04", "--min-speed", "1.0", "--name", "greek"), "")
	if code != 1 {
		t.Fatalf("exit %d with failures, want 1\n%s", code, errs)
	}
	if out != "ALPHA\nERROR input 1: job exited with status 3: bad input 3\nBETA\nERROR input 3: failed: no eligible workers\nGAMMA\n" {
		t.Errorf("stdout = %q", out)
	}
	for _, want := range []string{
		"aspen-node map: group 00000000000000000000000000000001: 5 inputs\n",
		"aspen-node map: input 1: job exited with status 3: bad input 3\n    | bad input 3\n    | detail\n",
		"aspen-node map: input 3: failed: no eligible workers\n",
		"5/5 done (3 verified, 2 failed)",
		"aspen-node map: 5 inputs: 3 verified, 2 failed; spent 0.00004 in ",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "\r") {
		t.Errorf("a progress bar was drawn on a non-terminal:\n%q", errs)
	}

	// All fine, inputs as files, quiet: exit 0 and nothing on stderr.
	a, b := writeFile(t, dir, "a", "x"), writeFile(t, dir, "b", "y")
	code, out, errs = runCmd(context.Background(), cmdMap, d.args(mod, a, b, "--max-price", "1", "--quiet"), "")
	if code != 0 || out != "X\nY\n" || errs != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// JSON lines from stdin, with the bar forced.
	code, out, errs = runCmd(context.Background(), cmdMap,
		d.args(mod, "--inputs", "-", "--max-price", "1", "--progress"), "\"p\"\n{\"text\":\"q\"}\n")
	if code != 0 || out != "P\nQ\n" || !strings.Contains(errs, "\r") || !strings.Contains(errs, "\x1b[0K") || !strings.Contains(errs, "2/2 done") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestMapCommandCollapsesRepeatedRefusals(t *testing.T) {
	d := newAPIDouble(t)
	dir := t.TempDir()
	mod := writeFile(t, dir, "m.wasm", "\x00asm")
	code, out, errs := runCmd(context.Background(), cmdMap, d.args(mod, "--inputs", "-", "--max-price", "1"),
		"\"nowork\"\n\"a\"\n\"nowork\"\n\"nowork\"\n")
	if code != 1 || out != "ERROR input 0: failed: no eligible workers\nA\nERROR input 2: failed: no eligible workers\nERROR input 3: failed: no eligible workers\n" {
		t.Fatalf("exit %d, stdout %q\n%s", code, out, errs)
	}
	if n := strings.Count(errs, "no eligible workers"); n != 2 ||
		!strings.Contains(errs, "aspen-node map: input 0: failed: no eligible workers\n") ||
		!strings.Contains(errs, "aspen-node map: 2 more inputs failed: no eligible workers\n") {
		t.Errorf("stderr:\n%s", errs)
	}
}

func TestMapCommandOutDir(t *testing.T) {
	d := newAPIDouble(t)
	dir := t.TempDir()
	mod := writeFile(t, dir, "m.wasm", "\x00asm")
	out := filepath.Join(dir, "out")
	code, stdout, errs := runCmd(context.Background(), cmdMap,
		d.args(mod, "--inputs", "-", "--max-price", "0.04", "--out", out), "\"a\"\n\"exit:2\"\n\"nowork\"\n")
	if code != 1 || stdout != "" {
		t.Fatalf("exit %d, stdout %q\n%s", code, stdout, errs)
	}
	files := map[string]string{
		"000000.out": "A\n",
		"000001.out": "",
		"000001.err": "input 1: job exited with status 2: bad input 2\nbad input 2\ndetail\n",
		"000002.err": "input 2: failed: no eligible workers\n",
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != len(files) {
		t.Errorf("%d files in --out, want %d", len(ents), len(files))
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestMapCommandUsage(t *testing.T) {
	d := newAPIDouble(t)
	dir := t.TempDir()
	mod := writeFile(t, dir, "m.wasm", "\x00asm")
	in := writeFile(t, dir, "in", "x")
	for name, tc := range map[string]struct {
		args []string
		code int
		msg  string
	}{
		"no module":    {d.args("--max-price", "1"), 2, "missing MODULE.wasm"},
		"no price":     {d.args(mod, in), 2, "--max-price is required"},
		"bad price":    {d.args(mod, in, "--max-price", "4c"), 2, "--max-price \"4c\""},
		"bad speed":    {d.args(mod, in, "--max-price", "1", "--min-speed", "fast"), 2, "--min-speed"},
		"one replica":  {d.args(mod, in, "--max-price", "1", "--replicas", "1"), 2, "2 to 16"},
		"bad memory":   {d.args(mod, in, "--max-price", "1", "--max-memory", "lots"), 2, "--max-memory"},
		"two sources":  {d.args(mod, in, "--lines", in, "--max-price", "1"), 2, "exactly one"},
		"no source":    {d.args(mod, "--max-price", "1"), 2, "exactly one"},
		"missing file": {d.args(mod, filepath.Join(dir, "absent"), "--max-price", "1"), 1, "absent"},
		"empty inputs": {d.args(mod, "--lines", writeFile(t, dir, "empty", ""), "--max-price", "1"), 1, "no inputs"},
		"wrong token":  {[]string{"--api", d.srv.URL, "--token", "nope", mod, in, "--max-price", "1"}, 1, "refused the API token"},
		"unknown flag": {d.args(mod, in, "--max-price", "1", "--frobnicate"), 2, "frobnicate"},
		"bad jsonl":    {d.args(mod, "--inputs", writeFile(t, dir, "bad.jsonl", "{"), "--max-price", "1"), 1, "line 1"},
	} {
		code, _, errs := runCmd(context.Background(), cmdMap, tc.args, "")
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%s: exit %d (want %d), stderr:\n%s\nwant it to mention %q", name, code, tc.code, errs, tc.msg)
		}
	}
}

func TestMapCommandInterrupted(t *testing.T) {
	d := newAPIDouble(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.onPoll = func(finished int) {
		if finished == 3 {
			cancel() // Ctrl-C while the third task finishes: the client sees two
		}
	}
	dir := t.TempDir()
	mod := writeFile(t, dir, "m.wasm", "\x00asm")
	code, out, errs := runCmd(ctx, cmdMap, d.args(mod, "--inputs", "-", "--max-price", "1"), "\"a\"\n\"b\"\n\"c\"\n\"d\"\n")
	if code != 130 {
		t.Fatalf("exit %d after Ctrl-C, want 130\n%s", code, errs)
	}
	if out != "A\nB\nERROR input 2: not finished: canceled, escrow refunded\nERROR input 3: not finished: canceled, escrow refunded\n" {
		t.Errorf("stdout = %q, want the finished prefix, then the canceled inputs", out)
	}
	if !strings.Contains(errs, "interrupted with 2 of 4 inputs finished; the rest were canceled and their escrow refunded") {
		t.Errorf("stderr:\n%s", errs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancels != 1 {
		t.Errorf("group canceled %d times on the node, want 1", d.cancels)
	}
}

func TestEmitterWritesInInputOrder(t *testing.T) {
	var out, errs bytes.Buffer
	st := newStatus(&out, &errs, "map", false, false)
	e, err := newEmitter(&out, &errs, outText, "", 4, st, func() { t.Fatal("aborted") })
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{2, 0, 3, 1} {
		e.add(client.Result{Index: i, Status: "ok", Stdout: []byte{byte('a' + i)}})
		if i == 0 && out.String() != "a\n" {
			t.Fatalf("after 2,0: %q", out.String())
		}
	}
	if out.String() != "a\nb\nc\nd\n" || e.finish(nil) != 0 {
		t.Fatalf("stdout %q", out.String())
	}
}

func TestEmitterAbortsOnWriteError(t *testing.T) {
	aborted := false
	var errs bytes.Buffer
	e, _ := newEmitter(failWriter{}, &errs, outText, "", 2, newStatus(failWriter{}, &errs, "map", true, false), func() { aborted = true })
	e.add(client.Result{Index: 0, Status: "ok", Stdout: []byte("x")})
	if !aborted || e.finish(context.Canceled) != 1 || !strings.Contains(errs.String(), "writing results: disk full") {
		t.Fatalf("aborted %v, stderr %q", aborted, errs.String())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }

func TestProgressLine(t *testing.T) {
	p := client.Progress{Total: 100, Verified: 40, Failed: 5, Errors: 7, Pending: 55, Spent: 12_300, Rate: 12.34, ETA: 4500e6}
	if got, want := progressLine(p), "45/100 done (38 verified, 7 failed), 12.3/s, ETA 4.5s, spent 0.0123"; got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
	for d, want := range map[string]string{"3723s": "1h2m", "185s": "3m5s", "12.4s": "12s", "0.44s": "440ms", "1.44s": "1.4s", "2h": "2h", "10m": "10m", "1h30s": "1h1m"} {
		dur, _ := parseDur(d)
		if got := roundDur(dur); got != want {
			t.Errorf("roundDur(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestMapCommandStructuredOutput(t *testing.T) {
	d := newAPIDouble(t)
	dir := t.TempDir()
	mod := writeFile(t, dir, "m.wasm", "\x00asm")
	in := "\"a\"\n\"exit:3\"\n\"nowork\"\n\"b\"\n"
	code, out, errs := runCmd(context.Background(), cmdMap, d.args(mod, "--inputs", "-", "--max-price", "1", "--output", "json"), in)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	var recs []inputRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("--output json is not one JSON document: %v\n%s", err, out)
	}
	want := []inputRecord{
		{Index: 0, Status: "verified", Job: "ok", Stdout: "A\n", Charged: "0.00001"},
		{Index: 1, Status: "failed", Error: "job exited with status 3: bad input 3", Job: "exit", ExitCode: 3, Stderr: "bad input 3\ndetail\n", Charged: "0.00001"},
		{Index: 2, Status: "failed", Error: "failed: no eligible workers", Charged: "0.00"},
		{Index: 3, Status: "verified", Job: "ok", Stdout: "B\n", Charged: "0.00001"},
	}
	if !reflect.DeepEqual(recs, want) {
		t.Errorf("json records:\n%+v\nwant\n%+v", recs, want)
	}
	if n := strings.Count(out, "\n"); n != 6 {
		t.Errorf("want one record per line inside the array, got %d lines:\n%s", n, out)
	}

	code, out, errs = runCmd(context.Background(), cmdMap, d.args(mod, "--inputs", "-", "--max-price", "1", "--output", "yaml"), in)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	var yrecs []inputRecord
	if err := yaml.Unmarshal([]byte(out), &yrecs); err != nil {
		t.Fatalf("--output yaml: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(yrecs, want) {
		t.Errorf("yaml records:\n%+v\nwant\n%+v", yrecs, want)
	}
	if code, _, errs = runCmd(context.Background(), cmdMap, d.args(mod, "--inputs", "-", "--max-price", "1", "--output", "xml"), in); code != 2 || !strings.Contains(errs, "want text, json or yaml") {
		t.Errorf("--output xml: exit %d\n%s", code, errs)
	}
}

// visibleLines is what a terminal shows for b: each line as left by its
// last carriage return or clear-line sequence.
func visibleLines(b string) []string {
	var out []string
	for _, l := range strings.Split(b, "\n") {
		l = strings.ReplaceAll(l, "\x1b[2K", "")
		l = strings.ReplaceAll(l, "\x1b[0K", "")
		if i := strings.LastIndex(l, "\r"); i >= 0 {
			l = l[i+1:]
		}
		out = append(out, l)
	}
	return out
}

// TestMapCommandTerminal draws the bar on a terminal that is both stdout
// and stderr: no result may share a line with the bar.
func TestMapCommandTerminal(t *testing.T) {
	prev := isTerminal
	isTerminal = func(io.Writer) bool { return true }
	t.Cleanup(func() { isTerminal = prev })
	d := newAPIDouble(t)
	mod := writeFile(t, t.TempDir(), "m.wasm", "\x00asm")
	var screen bytes.Buffer
	code := cmdMap(context.Background(), d.args(mod, "--inputs", "-", "--max-price", "1"),
		strings.NewReader("\"a\"\n\"b\"\n\"exit:2\"\n\"c\"\n"), &screen, &screen)
	if code != 1 {
		t.Fatalf("exit %d\n%q", code, screen.String())
	}
	if !strings.Contains(screen.String(), "\x1b[0K") {
		t.Fatalf("no bar drawn:\n%q", screen.String())
	}
	results := map[string]bool{"A": false, "B": false, "ERROR input 2: job exited with status 2: bad input 2": false, "C": false}
	for _, l := range visibleLines(screen.String()) {
		if _, ok := results[l]; ok {
			results[l] = true
		}
		for r := range results {
			if l != r && strings.Contains(l, r) && strings.Contains(l, "done (") {
				t.Errorf("result %q shares a line with the bar: %q", r, l)
			}
		}
	}
	for r, seen := range results {
		if !seen {
			t.Errorf("result %q is not on a line of its own:\n%q", r, screen.String())
		}
	}
}

func TestMapCommandDetach(t *testing.T) {
	d := newAPIDouble(t)
	mod := writeFile(t, t.TempDir(), "m.wasm", "\x00asm")
	code, out, errs := runCmd(context.Background(), cmdMap, d.args(mod, "--inputs", "-", "--max-price", "1", "--detach"), "\"a\"\n\"b\"\n")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	d.mu.Lock()
	id, polls := d.groups[0].g.ID, d.groups[0].next
	d.mu.Unlock()
	if out != id+"\n" || !strings.Contains(errs, "aspen-node results "+id+" --wait") {
		t.Errorf("stdout %q stderr %q, want the group ID %s", out, errs, id)
	}
	if polls != 0 {
		t.Errorf("--detach followed the group (%d polls)", polls)
	}
	if code, _, errs = runCmd(context.Background(), cmdMap, d.args(mod, "x", "--max-price", "1", "--detach", "--dry-run"), ""); code != 2 {
		t.Errorf("--detach --dry-run: exit %d %s", code, errs)
	}
}

func TestMapCommandWaitingForFunds(t *testing.T) {
	d := newAPIDouble(t)
	d.stmt = `{"Peer":"12D3KooWMe","Balance":21300000,"Escrow":0,"Issued":1700000000000}`
	mod := writeFile(t, t.TempDir(), "m.wasm", "\x00asm")
	code, _, errs := runCmd(context.Background(), cmdMap, d.args(mod, "--inputs", "-", "--max-price", "20", "--timeout", "2h", "--min-speed", "1.0"), "\"a\"\n\"b\"\n")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	// 2 replicas × (20/h × 2 h of standard work at speed 1.0 + 1 µ for carries).
	if want := "aspen-node map: waiting: balance 21.30 cannot cover the next task's escrow of 80.000002 (2 replicas × 20.00/h × 2h)"; !strings.Contains(errs, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errs)
	}
	// Enough funds: no such line.
	d.stmt = `{"Peer":"12D3KooWMe","Balance":100000000,"Escrow":0,"Issued":1700000000000}`
	if _, _, errs = runCmd(context.Background(), cmdMap, d.args(mod, "--inputs", "-", "--max-price", "20", "--timeout", "2h"), "\"a\"\n"); strings.Contains(errs, "waiting") {
		t.Errorf("waiting reported with funds:\n%s", errs)
	}
}
