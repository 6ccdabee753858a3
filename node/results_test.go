package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/aspen-market/aspen/node"
)

// loopModule is a WASI command whose _start loops forever: its task
// finishes only when it is canceled or times out.
var loopModule = []byte("\x00asm\x01\x00\x00\x00" +
	"\x01\x04\x01\x60\x00\x00" + // type 0: () -> ()
	"\x03\x02\x01\x00" + // one function of type 0
	"\x07\x0a\x01\x06_start\x00\x00" + // export _start
	"\x0a\x09\x01\x07\x00\x03\x40\x0c\x00\x0b\x0b") // loop br 0 end end

// apiGet GETs path on n's API with its token and decodes a 200 answer
// into out; it returns the status and, for other answers, the error text.
func apiGet(t *testing.T, n *node.Node, path string, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.APIAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+n.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		var e node.APIError
		_ = json.Unmarshal(body, &e)
		return resp.StatusCode, e.Error
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	return resp.StatusCode, ""
}

// getMetrics GETs n's /metrics with the read-only metrics token.
func getMetrics(t *testing.T, n *node.Node) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.APIAddr()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+n.MetricsToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	return resp
}

// gauge reads one unlabelled gauge from n's /metrics.
func gauge(t *testing.T, n *node.Node, name string) float64 {
	t.Helper()
	resp := getMetrics(t, n)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	f := fams[name]
	if f == nil || len(f.Metric) != 1 || f.Metric[0].Gauge == nil {
		t.Fatalf("metric %s: %v", name, f)
	}
	return f.Metric[0].Gauge.GetValue()
}

func TestResultsCursor(t *testing.T) {
	nw := startNetwork(t)
	nw.waitRated(t)
	ctx := context.Background()
	if err := nw.v.Credit(ctx, nw.consumer.ID(), 100_000_000); err != nil {
		t.Fatal(err)
	}
	var inputs [][]byte
	for i := range 7 {
		inputs = append(inputs, []byte(fmt.Sprintf("input %d", i)))
	}
	id, err := nw.consumer.SubmitGroup(ctx, node.GroupSpec{Module: catModule, Inputs: inputs,
		MaxPrice: 5_000_000, Replicas: 2, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	base := "/v1/groups/" + id.String() + "/results"

	// Poll with the cursor, two at a time, waiting for each new result:
	// every task arrives exactly once, in finish order, numbered 1, 2, ...
	var order []node.TaskResult
	seen := map[uint32]bool{}
	cursor, polls := "0", 0
	for {
		var page node.ResultsPage
		if code, msg := apiGet(t, nw.consumer, base+"?since="+cursor+"&limit=2&wait=30s", &page); code != 200 {
			t.Fatalf("poll: %d %s", code, msg)
		}
		polls++
		if len(page.Results) > 2 || (len(page.Results) == 0 && !page.Done) {
			t.Fatalf("poll %d: %d results, done %v (a wait of 30s cannot have elapsed)", polls, len(page.Results), page.Done)
		}
		for _, r := range page.Results {
			if seen[r.Index] {
				t.Fatalf("task %d delivered twice", r.Index)
			}
			seen[r.Index] = true
			if r.Seq != uint32(len(order)+1) || r.State != node.TaskVerified || !bytes.Equal(r.Stdout, inputs[r.Index]) {
				t.Fatalf("result %d: %+v", len(order), r)
			}
			order = append(order, r)
		}
		if want := fmt.Sprint(len(order)); page.Next != want {
			t.Fatalf("next = %q after %d results", page.Next, len(order))
		}
		cursor = page.Next
		if page.Done {
			if len(order) != len(inputs) || page.More || !page.Group.Done || page.Group.Verified != len(inputs) {
				t.Fatalf("done after %d results: %+v", len(order), page)
			}
			break
		}
	}
	if polls < 4 {
		t.Fatalf("%d polls for %d results two at a time", polls, len(inputs))
	}

	// A finished group answers a waiting request at once.
	start := time.Now()
	var page node.ResultsPage
	if code, msg := apiGet(t, nw.consumer, base+"?since="+cursor+"&wait=1m", &page); code != 200 || len(page.Results) != 0 || !page.Done || page.Next != cursor {
		t.Fatalf("at the end: %d %s %+v", code, msg, page)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("a finished group's request waited %v", d)
	}

	// Bad requests are refused with a clear 400; an unknown group is 404.
	for q, want := range map[string]string{
		"since=abc":             `since="abc" is not a results cursor`,
		"since=-1":              "not a results cursor",
		"since=007":             "not a results cursor",
		"since=":                "not a results cursor",
		"since=4294967296":      "not a results cursor",
		"since=8":               "cursor 8 is beyond this group's latest result (7)",
		"since=1&since=2":       "since given 2 times",
		"since=0&wait=forever":  `wait="forever"`,
		"since=0&wait=-1s":      `wait="-1s"`,
		"since=0&limit=0":       `limit="0"`,
		"since=0&limit=lots":    `limit="lots"`,
		"since=0&wait=1s&wait=": "wait given 2 times",
	} {
		code, msg := apiGet(t, nw.consumer, base+"?"+q, nil)
		if code != http.StatusBadRequest || !strings.Contains(msg, want) {
			t.Errorf("%s: %d %q, want 400 %q", q, code, msg, want)
		}
	}
	if code, _ := apiGet(t, nw.consumer, "/v1/groups/"+strings.Repeat("ab", 16)+"/results?since=0", nil); code != http.StatusNotFound {
		t.Errorf("unknown group: %d", code)
	}
	// The input-order form is still there (the dashboard's).
	var byIndex []node.TaskResult
	if code, msg := apiGet(t, nw.consumer, base+"?from=2&limit=3", &byIndex); code != 200 || len(byIndex) != 3 ||
		byIndex[0].Index != 2 || byIndex[2].Index != 4 || !bytes.Equal(byIndex[1].Stdout, inputs[3]) || byIndex[1].Seq == 0 {
		t.Fatalf("by index: %d %s %+v", code, msg, byIndex)
	}

	// After a restart the order and the cursors are the same.
	cfg := nw.nodeConfig("consumer", node.RoleConsumer)
	if err := nw.consumer.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, cfg)
	page = node.ResultsPage{}
	if code, msg := apiGet(t, n2, base+"?since=3", &page); code != 200 || len(page.Results) != 4 || !page.Done || page.Next != "7" {
		t.Fatalf("since 3 after restart: %d %s %+v", code, msg, page)
	}
	for i, r := range page.Results {
		if want := order[3+i]; r.Index != want.Index || r.Seq != want.Seq || !bytes.Equal(r.Stdout, want.Stdout) {
			t.Fatalf("after restart, result %d = %+v, was %+v", 3+i, r, want)
		}
	}
	if code, msg := apiGet(t, n2, base+"?since=8", nil); code != http.StatusBadRequest || !strings.Contains(msg, "beyond") {
		t.Fatalf("cursor beyond the end after restart: %d %s", code, msg)
	}
}

func TestResultsLongPoll(t *testing.T) {
	nw := startNetwork(t)
	nw.waitRated(t)
	ctx := context.Background()
	if err := nw.v.Credit(ctx, nw.consumer.ID(), 100_000_000); err != nil {
		t.Fatal(err)
	}
	id, err := nw.consumer.SubmitGroup(ctx, node.GroupSpec{Module: loopModule, Inputs: [][]byte{[]byte("x")},
		MaxPrice: 5_000_000, Replicas: 2, Timeout: 45 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	base := "/v1/groups/" + id.String() + "/results"

	// Nothing finishes: the wait elapses and the answer is empty.
	start := time.Now()
	var page node.ResultsPage
	if code, msg := apiGet(t, nw.consumer, base+"?since=0&wait=300ms", &page); code != 200 || len(page.Results) != 0 ||
		page.Done || page.More || page.Next != "0" || page.Group.Pending != 1 {
		t.Fatalf("empty wait: %d %s %+v", code, msg, page)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("answered after %v, before the wait elapsed", d)
	}
	if w := gauge(t, nw.consumer, "aspen_node_results_waiting"); w != 0 {
		t.Fatalf("%v requests still counted as waiting", w)
	}

	// A long wait returns as soon as the task finishes (here: canceled).
	type answer struct {
		page node.ResultsPage
		code int
		msg  string
		took time.Duration
	}
	got := make(chan answer, 1)
	go func() {
		var a answer
		start := time.Now()
		req, _ := http.NewRequest("GET", "http://"+nw.consumer.APIAddr()+base+"?since=0&wait=1m", nil)
		req.Header.Set("Authorization", "Bearer "+nw.consumer.Token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			a.msg = err.Error()
		} else {
			a.code = resp.StatusCode
			if err := json.NewDecoder(resp.Body).Decode(&a.page); err != nil {
				a.msg = err.Error()
			}
			resp.Body.Close()
		}
		a.took = time.Since(start)
		got <- a
	}()
	waitFor(t, "the request waiting", 30*time.Second, func() bool { return gauge(t, nw.consumer, "aspen_node_results_waiting") == 1 })
	canceled := time.Now()
	if err := nw.consumer.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.code != 200 || len(a.page.Results) != 1 || a.page.Results[0].State != node.TaskCanceled || a.page.Results[0].Seq != 1 ||
		!a.page.Done || a.page.Next != "1" {
		t.Fatalf("long poll: %d %s %+v", a.code, a.msg, a.page)
	}
	if d := time.Since(canceled); d > 20*time.Second || a.took > 50*time.Second {
		t.Fatalf("long poll answered %v after the cancel (%v in all)", d, a.took)
	}
	t.Logf("long poll answered %v after the cancel was sent", time.Since(canceled))
}
