package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
)

var wasm = []byte("\x00asm\x01\x00\x00\x00 a module")

func inputsOf(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func TestMapCompletesOverSeveralPolls(t *testing.T) {
	f := newFakeNode(t)
	f.step = 3
	f.order = func(n int) []int { // finish in reverse input order
		o := make([]int, n)
		for i := range o {
			o[i] = n - 1 - i
		}
		return o
	}
	inputs := inputsOf("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
	big := bytes.Repeat([]byte("z"), MaxInlineInput+1)
	inputs = append(inputs, big, []byte{}) // one uploaded as a blob, one empty
	var progress []Progress
	res, err := f.client().Map(context.Background(), wasm, inputs, MapOptions{
		Name: "letters", MaxPrice: 40_000, MinSpeed: protocol.SpeedUnit, Replicas: 3, Timeout: 90e9, MaxMemory: 64 << 20,
		Progress: func(p Progress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(inputs) {
		t.Fatalf("%d results for %d inputs", len(res), len(inputs))
	}
	for i, r := range res {
		if r.Index != i || r.Err != nil || r.Status != StatusOK || !bytes.Equal(r.Stdout, bytes.ToUpper(inputs[i])) || r.Charged != 1000 {
			t.Errorf("result %d = index %d status %q err %v stdout %.20q", i, r.Index, r.Status, r.Err, r.Stdout)
		}
	}
	// 12 tasks, 3 per poll: 4 polls, each reported.
	if len(progress) != 4 {
		t.Fatalf("%d progress reports, want 4: %+v", len(progress), progress)
	}
	for k, p := range progress {
		want := 3 * (k + 1)
		if p.Total != 12 || p.Verified != want || p.Finished() != want || p.Pending != 12-want || p.Spent != protocol.Micros(1000*want) || p.Group == "" {
			t.Errorf("progress %d = %+v", k, p)
		}
		if p.Rate <= 0 || (p.Pending > 0) != (p.ETA > 0) {
			t.Errorf("progress %d: rate %v ETA %v", k, p.Rate, p.ETA)
		}
	}

	// The module was uploaded once and only the large input as a blob; the
	// terms went out as decimal strings.
	if n := f.hit("POST /v1/blobs"); n != 2 {
		t.Errorf("%d blob uploads, want 2 (module, large input)", n)
	}
	req := f.locked(func() any { return f.submits[0] }).(SubmitRequest)
	if req.Module != protocol.BlobCID(wasm).String() || req.MaxPrice != "0.04" || req.MinSpeed != "1.0" ||
		req.Replicas != 3 || req.Timeout != "1m30s" || req.MaxMemory != 64<<20 || req.Name != "letters" {
		t.Errorf("submit request = %+v", req)
	}
	if in := req.Inputs[10]; in.CID != protocol.BlobCID(big).String() || in.Data != nil {
		t.Errorf("large input sent as %+v", in)
	}
	if in := req.Inputs[0]; in.CID != "" || string(in.Data) != "a" {
		t.Errorf("small input sent as %+v", in)
	}
}

func TestMapPerItemFailures(t *testing.T) {
	f := newFakeNode(t)
	f.step = 2
	inputs := inputsOf("ok", "exit:3", "trap", "nowork", "fine")
	res, err := f.client().Map(context.Background(), wasm, inputs, MapOptions{MaxPrice: 40_000})
	if err != nil {
		t.Fatal(err)
	}
	wantErr := []string{
		"",
		"input 1: job exited with status 3: boom 3",
		"input 2: job trapped: wasm error: unreachable",
		"input 3: failed: no eligible workers (max price 0.04 < 0.05)",
		"",
	}
	for i, r := range res {
		got := ""
		if r.Err != nil {
			got = r.Err.Error()
			if !errors.Is(r.Err, ErrJobFailed) {
				t.Errorf("input %d: %v does not wrap ErrJobFailed", i, r.Err)
			}
		}
		if got != wantErr[i] {
			t.Errorf("input %d: Err = %q, want %q", i, got, wantErr[i])
		}
	}
	var te *TaskError
	if !errors.As(res[1].Err, &te) || te.ExitCode != 3 || te.Status != StatusExit || te.State != StateVerified ||
		!strings.Contains(string(te.Stderr), "more") {
		t.Fatalf("TaskError = %+v", te)
	}
	if string(res[1].Stdout) != "partial" || res[1].ExitCode != 3 {
		t.Errorf("a failed job's own output is not carried: %+v", res[1])
	}
	if !errors.As(res[3].Err, &te) || te.State != StateFailed || res[3].Status != "" {
		t.Fatalf("failed task = %+v / %+v", te, res[3])
	}
}

func TestMapPagesThroughResults(t *testing.T) {
	f := newFakeNode(t)
	f.step = 700 // everything finishes on the first poll
	inputs := make([][]byte, 600)
	for i := range inputs {
		inputs[i] = []byte(fmt.Sprint(i))
	}
	res, err := f.client().Map(context.Background(), wasm, inputs, MapOptions{MaxPrice: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || string(r.Stdout) != fmt.Sprint(i) {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	// One poll finished everything: the pages follow at once, each asking
	// after the last, every request ready to wait for news.
	want := []string{"since=0 limit=256 wait=5s", "since=256 limit=256 wait=5s", "since=512 limit=256 wait=5s"}
	if pages := f.locked(func() any { return f.pages }); fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Fatalf("results pages = %v, want %v", pages, want)
	}
}

func TestMapReceivesEachResultOnce(t *testing.T) {
	// Input 0 finishes last: with the cursor, no result is ever answered
	// twice (the input-order form re-sent everything after input 0 on
	// every poll).
	f := newFakeNode(t)
	f.step = 50
	f.order = func(n int) []int {
		o := make([]int, 0, n)
		for i := 1; i < n; i++ {
			o = append(o, i)
		}
		return append(o, 0)
	}
	inputs := make([][]byte, 600)
	for i := range inputs {
		inputs[i] = []byte(fmt.Sprint(i))
	}
	var got []int
	err := f.client().MapStream(context.Background(), wasm, inputs, MapOptions{MaxPrice: 1}, func(r Result) {
		if r.Err != nil || string(r.Stdout) != fmt.Sprint(r.Index) {
			t.Errorf("result %+v", r)
		}
		got = append(got, r.Index)
	})
	if err != nil {
		t.Fatal(err)
	}
	if sent := f.locked(func() any { return f.sent }); sent != 600 || len(got) != 600 || got[599] != 0 {
		t.Fatalf("%v entries answered, %d delivered (last %d) for 600 inputs", sent, len(got), got[len(got)-1])
	}
	if n := f.hit("GET /v1/groups/{id}/results"); n != 12 {
		t.Fatalf("%d results requests, want 12 (50 finish per poll)", n)
	}
	if n := f.hit("GET /v1/groups/{id}"); n != 0 {
		t.Fatalf("%d status polls besides the results", n)
	}
}

func TestMapCancelsGroupWhenContextCanceled(t *testing.T) {
	f := newFakeNode(t)
	f.step = 2
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inputs := inputsOf("a", "b", "c", "d", "e", "f", "g", "h")
	var streamed []int
	res, err := f.client().Map(ctx, wasm, inputs, MapOptions{MaxPrice: 40_000, Progress: func(p Progress) {
		if p.Finished() >= 4 {
			cancel() // like Ctrl-C in the middle of the map
		}
		streamed = append(streamed, p.Finished())
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Map after cancel: %v, want context.Canceled", err)
	}
	if cancels := f.locked(func() any { return f.cancels }).([]string); len(cancels) != 1 || cancels[0] != fmt.Sprintf("%032x", 1) {
		t.Fatalf("group not canceled on the node: %v", cancels)
	}
	if len(res) != len(inputs) {
		t.Fatalf("partial results: %d entries", len(res))
	}
	for i, r := range res {
		if i < 4 {
			if r.Err != nil || string(r.Stdout) != strings.ToUpper(string(inputs[i])) {
				t.Errorf("finished input %d = %+v", i, r)
			}
		} else if !errors.Is(r.Err, ErrNotFinished) || r.Index != i {
			t.Errorf("unfinished input %d = %+v, want ErrNotFinished", i, r)
		}
	}
	if fmt.Sprint(streamed) != "[2 4]" {
		t.Errorf("progress = %v", streamed)
	}
}

func TestMapRefusedByVerifier(t *testing.T) {
	f := newFakeNode(t)
	f.refuse = "insufficient funds: balance 0.01 cannot cover escrow 0.08"
	res, err := f.client().Map(context.Background(), wasm, inputsOf("a", "b"), MapOptions{MaxPrice: 40_000})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "insufficient funds") {
		t.Fatalf("Map on a refused group: %v, want ErrRefused", err)
	}
	if len(res) != 2 {
		t.Fatalf("results = %v", res)
	}
	for i, r := range res {
		want := fmt.Sprintf("input %d: failed: insufficient funds: balance 0.01 cannot cover escrow 0.08", i)
		if r.Err == nil || r.Err.Error() != want {
			t.Errorf("input %d: %v, want %q", i, r.Err, want)
		}
	}
}

func TestMapInvalidModule(t *testing.T) {
	f := newFakeNode(t)
	res, err := f.client().Map(context.Background(), []byte("not wasm"), inputsOf("a"), MapOptions{MaxPrice: 40_000})
	if res != nil || !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "invalid module") {
		t.Fatalf("Map with an invalid module = %v, %v", res, err)
	}
}

func TestMapValidatesOptions(t *testing.T) {
	f := newFakeNode(t)
	c := f.client()
	for name, tc := range map[string]struct {
		mod    []byte
		inputs [][]byte
		opts   MapOptions
	}{
		"no module":  {nil, inputsOf("a"), MapOptions{MaxPrice: 1}},
		"no inputs":  {wasm, nil, MapOptions{MaxPrice: 1}},
		"no price":   {wasm, inputsOf("a"), MapOptions{}},
		"1 replica":  {wasm, inputsOf("a"), MapOptions{MaxPrice: 1, Replicas: 1}},
		"negative t": {wasm, inputsOf("a"), MapOptions{MaxPrice: 1, Timeout: -1}},
	} {
		if res, err := c.Map(context.Background(), tc.mod, tc.inputs, tc.opts); res != nil || !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, %v, want ErrBadRequest", name, res, err)
		}
	}
	if n := f.hit("POST /v1/blobs"); n != 0 {
		t.Errorf("%d uploads for refused options", n)
	}
}

func TestMapSurvivesTransientNodeErrors(t *testing.T) {
	f := newFakeNode(t)
	f.step = 1
	f.onPoll = func(g *fakeGroup) {
		f.mu.Lock()
		if g.next == 1 {
			f.fail = 3 // the node restarts after the first poll
		}
		f.mu.Unlock()
	}
	res, err := f.client().Map(context.Background(), wasm, inputsOf("a", "b"), MapOptions{MaxPrice: 1})
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("Map across node errors: %v %+v", err, res)
	}
	if left := f.locked(func() any { return f.fail }); left != 0 {
		t.Fatalf("the failing polls were not made: %d left", left)
	}
}

func TestMapStreamDeliversEachOnce(t *testing.T) {
	f := newFakeNode(t)
	f.step = 2
	f.order = func(n int) []int { return []int{3, 1, 4, 0, 2} }
	var got []int
	err := f.client().MapStream(context.Background(), wasm, inputsOf("a", "b", "c", "d", "e"), MapOptions{MaxPrice: 1},
		func(r Result) { got = append(got, r.Index) })
	if err != nil {
		t.Fatal(err)
	}
	// Delivered in the order the tasks finished.
	if fmt.Sprint(got) != "[3 1 4 0 2]" {
		t.Fatalf("delivery order %v", got)
	}
}

func TestWaitFollowsSubmittedGroup(t *testing.T) {
	f := newFakeNode(t)
	f.step = 2
	c := f.client()
	ctx := context.Background()
	mod, err := c.PutBlob(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Submit(ctx, SubmitRequest{Module: mod, MaxPrice: "0.01", Inputs: []Input{{Data: []byte("x")}, {Data: []byte("exit:1")}, {Data: []byte("y")}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []Result
	var last Progress
	if err := c.Wait(ctx, resp.ID, func(p Progress) { last = p }, func(r Result) { got = append(got, r) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || last.Finished() != 3 || last.Errors != 1 || last.Pending != 0 || last.ETA != 0 {
		t.Fatalf("Wait delivered %d, last progress %+v", len(got), last)
	}
	if err := c.Wait(ctx, "ffffffffffffffffffffffffffffffff", nil, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Wait on an unknown group: %v", err)
	}
}

func TestResultsSince(t *testing.T) {
	f := newFakeNode(t)
	f.step = 2
	c := f.client()
	ctx := context.Background()
	mod, _ := c.PutBlob(ctx, wasm)
	resp, err := c.Submit(ctx, SubmitRequest{Module: mod, MaxPrice: "0.01", Inputs: []Input{{Data: []byte("x")}, {Data: []byte("y")}, {Data: []byte("z")}}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.ResultsSince(ctx, resp.ID, "", 1, 2*time.Second)
	if err != nil || len(p.Results) != 1 || p.Results[0].Seq != 1 || p.Next != "1" || !p.More || p.Done || p.Group.Verified != 2 {
		t.Fatalf("first page = %+v, %v", p, err)
	}
	p, err = c.ResultsSince(ctx, resp.ID, p.Next, 0, 0)
	if err != nil || len(p.Results) != 2 || p.Results[1].Seq != 3 || p.Next != "3" || p.More || !p.Done {
		t.Fatalf("second page = %+v, %v", p, err)
	}
	want := []string{"since=0 limit=1 wait=2s", "since=1 limit=0 wait="}
	if pages := f.locked(func() any { return f.pages }); fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Fatalf("queries %v, want %v", pages, want)
	}
	if _, err := c.ResultsSince(ctx, resp.ID, "x", 0, 0); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad cursor: %v", err)
	}

	// A node from before the cursor answers the input-order list.
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"index":0,"state":"pending","exit_code":0,"charged":0}]`)
	}))
	defer old.Close()
	_, err = New(old.URL, "t").ResultsSince(ctx, resp.ID, "0", 0, time.Second)
	if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "predates results by cursor") {
		t.Fatalf("old node: %v", err)
	}
}
