package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
)

// fakeNode emulates an aspen-node's local HTTP API (the endpoints and
// answers of node/api.go) for the client's tests. Jobs "run" by a rule on
// their input, and every poll of a group (GET /v1/groups/{id}, or a
// results request by cursor) finishes the next `step` tasks in `order`, so
// a test controls exactly how a group progresses poll by poll, without
// timing. It answers a results request at once (it never waits).
//
// Rules: input "exit:N" exits N with stderr "boom N\nmore"; "trap" traps;
// "nowork" is failed by the verifier (no eligible workers); anything else
// exits 0 with the input upper-cased on stdout.
type fakeNode struct {
	t     *testing.T
	token string
	srv   *httptest.Server

	mu      sync.Mutex
	blobs   map[string][]byte
	groups  map[string]*fakeGroup
	nextID  int
	step    int                // tasks finished per poll (default 1)
	order   func(n int) []int  // finish order (default input order)
	refuse  string             // when set, submit creates the group then refuses it with 402
	fail    int                // the next `fail` group polls answer 503
	onPoll  func(g *fakeGroup) // called (unlocked) after each successful poll
	hits    map[string]int     // requests by route pattern
	pages   []string           // the queries of results requests
	sent    int                // results entries answered by cursor
	cancels []string           // canceled group IDs
	submits []SubmitRequest    // decoded submit bodies
}

type fakeGroup struct {
	id       string
	tasks    []TaskResult
	order    []int
	next     int    // tasks of order finished so far
	fin      []bool // by index
	finished []int  // indices in the order they became final (finish number = position + 1)
	canceled bool
	spent    protocol.Micros
	created  int64
	err      string
}

const fakeToken = "0123456789abcdef0123456789abcdef"

func newFakeNode(t *testing.T) *fakeNode {
	f := &fakeNode{t: t, token: fakeToken, blobs: map[string][]byte{}, groups: map[string]*fakeGroup{},
		step: 1, hits: map[string]int{}}
	mux := http.NewServeMux()
	route := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			f.hits[pattern]++
			f.mu.Unlock()
			h(w, r)
		})
	}
	route("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, Info{PeerID: "12D3KooWConsumer", Role: "consumer", Verifier: "12D3KooWVerifier", Version: "v1"})
	})
	route("POST /v1/blobs", f.putBlob)
	route("GET /v1/blobs/{cid}", f.getBlob)
	route("POST /v1/groups", f.submit)
	route("GET /v1/groups", f.listGroups)
	route("GET /v1/groups/{id}", f.poll)
	route("GET /v1/groups/{id}/tasks", f.tasks)
	route("GET /v1/groups/{id}/results", f.results)
	route("POST /v1/groups/{id}/cancel", f.cancel)
	route("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, []Peer{{ID: "12D3KooWVerifier", Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}}})
	})
	route("GET /v1/offers", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"worker":"12D3KooWWorker","min_price":20000,"capacity":2,"slots":2,"expires":1,"seen":2}]`)
	})
	route("GET /v1/balance", func(w http.ResponseWriter, r *http.Request) {
		// protocol.Statement has no json tags: Go field names.
		io.WriteString(w, `{"Peer":"12D3KooWConsumer","Nonce":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],"Balance":12500000,`+
			`"Escrow":400000,"Spent":3210000,"Earned":0,"Pending":0,"PaidOut":0,"Strikes":0,"Rating":null,"Issued":1700000000000}`)
	})
	route("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("limit") != "5" {
			writeErr(w, 400, "want limit=5")
			return
		}
		writeJSON(w, 409, map[string]string{"error": "node: not a worker"})
	})
	f.srv = httptest.NewServer(f.auth(mux))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeNode) client(opts ...Option) *Client {
	return New(f.srv.URL, f.token, append([]Option{WithPollInterval(time.Millisecond, 2*time.Millisecond)}, opts...)...)
}

func (f *fakeNode) hit(pattern string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[pattern]
}

// locked returns get() evaluated under the fake's lock.
func (f *fakeNode) locked(get func() any) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return get()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func (f *fakeNode) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			writeErr(w, 401, "missing or wrong API token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (f *fakeNode) putBlob(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		writeErr(w, 400, err.Error())
		return
	}
	c := protocol.BlobCID(b).String()
	f.mu.Lock()
	f.blobs[c] = b
	f.mu.Unlock()
	writeJSON(w, 201, map[string]any{"cid": c, "size": len(b)})
}

func (f *fakeNode) getBlob(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	b, ok := f.blobs[r.PathValue("cid")]
	f.mu.Unlock()
	if !ok {
		writeErr(w, 404, "store: not found")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(b)
}

// run computes a task's outcome from its input.
func run(in []byte) TaskResult {
	s := string(in)
	switch {
	case strings.HasPrefix(s, "exit:"):
		n, _ := strconv.Atoi(s[5:])
		return TaskResult{State: StateVerified, Status: StatusExit, ExitCode: uint32(n), Stdout: []byte("partial"),
			Stderr: []byte(fmt.Sprintf("\nboom %d\nmore\n", n)), Charged: 1000}
	case s == "trap":
		return TaskResult{State: StateVerified, Status: StatusTrap, Message: "wasm error: unreachable\nwasm stack trace: ...", Charged: 1000}
	case s == "nowork":
		return TaskResult{State: StateFailed, Reason: "no eligible workers (max price 0.04 < 0.05)"}
	}
	return TaskResult{State: StateVerified, Status: StatusOK, Stdout: bytes.ToUpper(in), Charged: 1000}
}

func (f *fakeNode) submit(w http.ResponseWriter, r *http.Request) {
	var req SubmitRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields() // as the node does
	if err := dec.Decode(&req); err != nil {
		writeErr(w, 400, "bad JSON: "+err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submits = append(f.submits, req)
	mod, ok := f.blobs[req.Module]
	if !ok {
		writeErr(w, 400, "node: bad request: module "+req.Module+": not found (upload it to /v1/blobs first)")
		return
	}
	if !bytes.HasPrefix(mod, []byte("\x00asm")) {
		writeErr(w, 400, "node: invalid module: not a wasm module")
		return
	}
	if _, err := protocol.ParseAmount(req.MaxPrice); err != nil {
		writeErr(w, 400, "node: bad request: max_price: "+err.Error())
		return
	}
	if req.Timeout != "" {
		if _, err := time.ParseDuration(req.Timeout); err != nil {
			writeErr(w, 400, "node: bad request: timeout: "+err.Error())
			return
		}
	}
	if len(req.Inputs) == 0 {
		writeErr(w, 400, "node: bad request: no inputs")
		return
	}
	f.nextID++
	g := &fakeGroup{id: fmt.Sprintf("%032x", f.nextID), created: time.Now().UnixMilli()}
	for i, in := range req.Inputs {
		data := in.Data
		if in.CID != "" {
			if in.Data != nil {
				writeErr(w, 400, fmt.Sprintf("node: bad request: input %d has both cid and data", i))
				return
			}
			if data, ok = f.blobs[in.CID]; !ok {
				writeErr(w, 400, fmt.Sprintf("node: bad request: input %d (%s): not found", i, in.CID))
				return
			}
		}
		tr := run(data)
		tr.Index = uint32(i)
		g.tasks = append(g.tasks, tr)
	}
	g.order = make([]int, len(g.tasks))
	for i := range g.order {
		g.order[i] = i
	}
	if f.order != nil {
		g.order = f.order(len(g.tasks))
	}
	g.fin = make([]bool, len(g.tasks))
	f.groups[g.id] = g
	if f.refuse != "" {
		g.err = f.refuse
		for i := range g.tasks {
			g.tasks[i] = TaskResult{Index: uint32(i), State: StateFailed, Reason: f.refuse}
		}
		g.advance(len(g.order))
		writeJSON(w, 402, map[string]any{"id": g.id, "status": g.status(), "error": "node: refused by verifier: " + f.refuse})
		return
	}
	writeJSON(w, 201, SubmitResponse{ID: g.id, Status: g.status()})
}

// advance finishes the next k tasks of the group's order.
func (g *fakeGroup) advance(k int) {
	for ; k > 0 && g.next < len(g.order); k-- {
		g.fin[g.order[g.next]] = true
		g.finished = append(g.finished, g.order[g.next])
		g.next++
	}
}

// entry is task i as the API shows it.
func (g *fakeGroup) entry(i int) TaskResult {
	if g.fin[i] {
		return g.tasks[i]
	}
	if g.canceled {
		return TaskResult{Index: uint32(i), State: StateCanceled, Reason: "canceled"}
	}
	return TaskResult{Index: uint32(i), State: StatePending}
}

func (g *fakeGroup) status() Group {
	s := Group{ID: g.id, Tasks: len(g.tasks), Created: g.created, Submitted: len(g.tasks), Error: g.err}
	for i := range g.tasks {
		e := g.entry(i)
		switch e.State {
		case StatePending:
			s.Pending++
		case StateVerified:
			s.Verified++
		case StateFailed:
			s.Failed++
		case StateCanceled:
			s.Canceled++
		}
		s.Spent += e.Charged
	}
	s.Done = s.Pending == 0
	switch {
	case !s.Done:
		s.State = "running"
	case s.Failed > 0 || s.Canceled > 0:
		s.State = "finished with failures"
	default:
		s.State = "verified"
	}
	return s
}

func (f *fakeNode) group(w http.ResponseWriter, r *http.Request) *fakeGroup {
	g := f.groups[r.PathValue("id")]
	if g == nil {
		writeErr(w, 404, "node: unknown job group")
	}
	return g
}

func (f *fakeNode) poll(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	g := f.pollLocked(w, r)
	if g == nil {
		f.mu.Unlock()
		return
	}
	st := g.status()
	hook := f.onPoll
	f.mu.Unlock()
	writeJSON(w, 200, st)
	if hook != nil {
		hook(g)
	}
}

// pollLocked fails the request while f.fail says so, else finishes the
// group's next tasks and returns the group (nil when it answered).
func (f *fakeNode) pollLocked(w http.ResponseWriter, r *http.Request) *fakeGroup {
	if f.fail > 0 {
		f.fail--
		writeErr(w, 503, "node restarting")
		return nil
	}
	g := f.group(w, r)
	if g != nil && !g.canceled {
		g.advance(f.step)
	}
	return g
}

func (f *fakeNode) listGroups(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []Group{}
	for i := f.nextID; i > 0; i-- {
		out = append(out, f.groups[fmt.Sprintf("%032x", i)].status())
	}
	writeJSON(w, 200, out)
}

func (f *fakeNode) tasks(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.group(w, r)
	if g == nil {
		return
	}
	out := []Task{}
	for i := range g.tasks {
		e := g.entry(i)
		out = append(out, Task{Index: e.Index, State: e.State, Reason: e.Reason, ExitCode: e.ExitCode, Charged: e.Charged})
	}
	writeJSON(w, 200, out)
}

func (f *fakeNode) results(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("since") {
		f.resultsSince(w, r)
		return
	}
	from, _ := strconv.Atoi(q.Get("from"))
	limit, _ := strconv.Atoi(q.Get("limit"))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pages = append(f.pages, fmt.Sprintf("from=%d limit=%d", from, limit))
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	g := f.group(w, r)
	if g == nil {
		return
	}
	out := []TaskResult{}
	for i := from; i < len(g.tasks) && len(out) < limit; i++ {
		e := g.entry(i)
		if e.State != StateVerified {
			e.Stdout, e.Stderr, e.Status, e.Message = nil, nil, "", ""
		}
		out = append(out, e)
	}
	writeJSON(w, 200, out)
}

// resultsSince answers the cursor form: a poll, then what finished after
// the cursor (a finish number) in finish order.
func (f *fakeNode) resultsSince(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, err := strconv.Atoi(q.Get("since"))
	limit, _ := strconv.Atoi(q.Get("limit"))
	f.mu.Lock()
	f.pages = append(f.pages, fmt.Sprintf("since=%s limit=%d wait=%s", q.Get("since"), limit, q.Get("wait")))
	g := f.pollLocked(w, r)
	if g == nil {
		f.mu.Unlock()
		return
	}
	if err != nil || since < 0 || since > len(g.finished) {
		f.mu.Unlock()
		writeErr(w, 400, "node: bad request: bad cursor")
		return
	}
	if limit <= 0 {
		limit = 1000
	}
	page := ResultsPage{Results: []TaskResult{}}
	end := min(since+limit, len(g.finished))
	for k := since; k < end; k++ {
		e := g.entry(g.finished[k])
		e.Seq = uint32(k + 1)
		page.Results = append(page.Results, e)
	}
	f.sent += len(page.Results)
	page.Next = fmt.Sprint(end)
	page.More = end < len(g.finished)
	page.Done = len(g.finished) == len(g.tasks) && !page.More
	page.Group = g.status()
	hook := f.onPoll
	f.mu.Unlock()
	writeJSON(w, 200, page)
	if hook != nil {
		hook(g)
	}
}

func (f *fakeNode) cancel(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.group(w, r)
	if g == nil {
		return
	}
	for i := range g.tasks {
		if !g.fin[i] && !g.canceled {
			g.finished = append(g.finished, i)
		}
	}
	g.canceled = true
	f.cancels = append(f.cancels, g.id)
	writeJSON(w, 200, g.status())
}
