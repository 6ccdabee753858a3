package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
)

func TestAuthRefused(t *testing.T) {
	f := newFakeNode(t)
	c := New(f.srv.URL, "wrong-token")
	_, err := c.Info(context.Background())
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Info with a wrong token: %v, want ErrUnauthorized", err)
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Message != "missing or wrong API token" {
		t.Fatalf("APIError = %+v", ae)
	}
	// Map refuses before submitting anything.
	res, err := c.Map(context.Background(), []byte("\x00asm"), [][]byte{[]byte("a")}, MapOptions{MaxPrice: 40_000})
	if res != nil || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Map with a wrong token: %v, %v", res, err)
	}
	if !strings.Contains(err.Error(), "uploading module") {
		t.Errorf("error does not say what failed: %v", err)
	}
}

func TestNewNormalisesBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7341":          "http://127.0.0.1:7341",
		" http://127.0.0.1:7341/": "http://127.0.0.1:7341",
		"https://node.example:1/": "https://node.example:1",
	} {
		if got := New(in, "t").BaseURL(); got != want {
			t.Errorf("New(%q).BaseURL() = %q, want %q", in, got, want)
		}
	}
}

func TestConnectResolution(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("ASPEN_API", "")
	t.Setenv("ASPEN_TOKEN", "")
	t.Setenv("ASPEN_DATA", dir)

	if _, err := FromEnv(""); !errors.Is(err, ErrNoAPI) {
		t.Fatalf("FromEnv with nothing configured: %v, want ErrNoAPI", err)
	}
	if err := os.WriteFile(filepath.Join(dir, AddrFile), []byte("127.0.0.1:7341\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := FromEnv(""); !errors.Is(err, ErrNoAPI) || !strings.Contains(err.Error(), TokenFile) {
		t.Fatalf("FromEnv without a token file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte("filetoken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := FromEnv("")
	if err != nil || c.BaseURL() != "http://127.0.0.1:7341" || c.token != "filetoken" {
		t.Fatalf("from data dir files: %+v, %v", c, err)
	}
	t.Setenv("ASPEN_API", "10.0.0.1:1")
	t.Setenv("ASPEN_TOKEN", "envtoken")
	if c, _ = FromEnv(dir); c.BaseURL() != "http://10.0.0.1:1" || c.token != "envtoken" {
		t.Fatalf("env does not override files: %s %s", c.BaseURL(), c.token)
	}
	if c, _ = Connect("http://10.0.0.2:2", "argtoken", dir); c.BaseURL() != "http://10.0.0.2:2" || c.token != "argtoken" {
		t.Fatalf("arguments do not override env: %s %s", c.BaseURL(), c.token)
	}
	// An explicit data directory is read when the env is empty.
	t.Setenv("ASPEN_API", "")
	t.Setenv("ASPEN_TOKEN", "")
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, AddrFile), []byte("127.0.0.2:9"), 0o600)
	os.WriteFile(filepath.Join(other, TokenFile), []byte("othertoken"), 0o600)
	if c, err = FromEnv(other); err != nil || c.BaseURL() != "http://127.0.0.2:9" || c.token != "othertoken" {
		t.Fatalf("FromEnv(other): %v %v", c, err)
	}
}

func TestRawCalls(t *testing.T) {
	f := newFakeNode(t)
	c := f.client()
	ctx := context.Background()

	in, err := c.Info(ctx)
	if err != nil || in.Role != "consumer" || in.Verifier != "12D3KooWVerifier" {
		t.Fatalf("Info = %+v, %v", in, err)
	}
	data := []byte("some blob bytes")
	cid, err := c.PutBlob(ctx, data)
	if err != nil || cid != protocol.BlobCID(data).String() {
		t.Fatalf("PutBlob = %q, %v", cid, err)
	}
	got, err := c.GetBlob(ctx, cid)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetBlob = %q, %v", got, err)
	}
	if _, err := c.GetBlob(ctx, protocol.BlobCID([]byte("absent")).String()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetBlob of a missing blob: %v, want ErrNotFound", err)
	}

	st, err := c.Balance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Peer != "12D3KooWConsumer" || st.Balance != 12_500_000 || st.Escrow != 400_000 || st.Spent != 3_210_000 || st.Issued != 1700000000000 {
		t.Fatalf("Balance = %+v", st)
	}

	offers, err := c.Offers(ctx)
	if err != nil || len(offers) != 1 || offers[0].MinPrice != 20_000 || offers[0].Slots != 2 {
		t.Fatalf("Offers = %+v, %v", offers, err)
	}
	peers, err := c.Peers(ctx)
	if err != nil || len(peers) != 1 || peers[0].ID != "12D3KooWVerifier" {
		t.Fatalf("Peers = %+v, %v", peers, err)
	}
	if _, err := c.Jobs(ctx, 5); !errors.Is(err, ErrWrongRole) {
		t.Fatalf("Jobs on a consumer: %v, want ErrWrongRole", err)
	}

	mod, _ := c.PutBlob(ctx, []byte("\x00asm module"))
	resp, err := c.Submit(ctx, SubmitRequest{Name: "raw", Module: mod, Inputs: []Input{{Data: []byte("a")}, {CID: cid}},
		MaxPrice: "0.04", MinSpeed: "1.0", Timeout: "1m0s"})
	if err != nil || resp.ID == "" || resp.Status.Tasks != 2 || resp.Status.Pending != 2 {
		t.Fatalf("Submit = %+v, %v", resp, err)
	}
	g, err := c.Group(ctx, resp.ID) // one poll finishes one task
	if err != nil || g.Verified != 1 || g.Pending != 1 || g.Done || g.Finished() != 1 {
		t.Fatalf("Group = %+v, %v", g, err)
	}
	gs, err := c.Groups(ctx)
	if err != nil || len(gs) != 1 || gs[0].ID != resp.ID {
		t.Fatalf("Groups = %+v, %v", gs, err)
	}
	ts, err := c.Tasks(ctx, resp.ID)
	if err != nil || len(ts) != 2 || ts[0].State != StateVerified || ts[1].State != StatePending || ts[0].Charged != 1000 {
		t.Fatalf("Tasks = %+v, %v", ts, err)
	}
	rs, err := c.Results(ctx, resp.ID, 1, 10)
	if err != nil || len(rs) != 1 || rs[0].Index != 1 || rs[0].State != StatePending {
		t.Fatalf("Results(from 1) = %+v, %v", rs, err)
	}
	cg, err := c.Cancel(ctx, resp.ID)
	if err != nil || cg.Canceled != 1 || !cg.Done {
		t.Fatalf("Cancel = %+v, %v", cg, err)
	}
	if _, err := c.Group(ctx, "ffffffffffffffffffffffffffffffff"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown group: %v, want ErrNotFound", err)
	}
	if _, err := c.Submit(ctx, SubmitRequest{Module: mod, MaxPrice: "lots", Inputs: []Input{{Data: []byte("a")}}}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad price: %v, want ErrBadRequest", err)
	}
}

// TestWireTypesMatchProtocol: the client's own forms of protocol.Rating
// and protocol.ResultStatus decode what the node encodes.
func TestWireTypesMatchProtocol(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	pr := protocol.Rating{Worker: id, Speed: 1250, ReliabilityPPM: 990_000, Strikes: 1, Issued: 1, Expires: 2}
	b, err := json.Marshal(&pr)
	if err != nil {
		t.Fatal(err)
	}
	var cr Rating
	if err := json.Unmarshal(b, &cr); err != nil {
		t.Fatal(err)
	}
	if want := (Rating{Worker: id.String(), Speed: 1250, ReliabilityPPM: 990_000, Strikes: 1, Issued: 1, Expires: 2}); cr != want {
		t.Errorf("protocol.Rating %s decodes as %+v, want %+v", b, cr, want)
	}
	for s := 0; s <= 255; s++ {
		if got, want := JobStatus(s).String(), protocol.ResultStatus(s).String(); got != want {
			t.Errorf("JobStatus(%d) = %q, protocol says %q", s, got, want)
		}
	}
}

func TestTaskErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		e    TaskError
		want string
	}{
		{TaskError{Index: 7, State: StateVerified, Status: StatusExit, ExitCode: 3, Stderr: []byte("\n  bad input: x  \nat line 2\n")},
			"input 7: job exited with status 3: bad input: x"},
		{TaskError{Index: 7, State: StateVerified, Status: StatusExit, ExitCode: 1}, "input 7: job exited with status 1"},
		{TaskError{Index: 0, State: StateVerified, Status: StatusTrap, Message: "wasm error: unreachable\ntrace"},
			"input 0: job trapped: wasm error: unreachable"},
		{TaskError{Index: 2, State: StateVerified, Status: StatusMemoryLimit}, "input 2: job exceeded its memory cap"},
		{TaskError{Index: 3, State: StateFailed, Reason: "no eligible workers (max price too low)"},
			"input 3: failed: no eligible workers (max price too low)"},
		{TaskError{Index: 4, State: StateCanceled, Reason: "canceled"}, "input 4: canceled"},
		{TaskError{Index: 5, State: StateVerified, Status: StatusExit, ExitCode: 9, Stderr: bytes.Repeat([]byte("é"), 300)},
			"input 5: job exited with status 9: " + strings.Repeat("é", 100) + "…"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q\nwant      %q", got, tc.want)
		}
		if !errors.Is(&tc.e, ErrJobFailed) {
			t.Errorf("%v does not wrap ErrJobFailed", &tc.e)
		}
	}
}

func TestPollIntervalOption(t *testing.T) {
	c := New("x", "t", WithPollInterval(5*time.Millisecond, time.Millisecond))
	if c.pollMin != 5*time.Millisecond || c.pollMax != 5*time.Millisecond {
		t.Fatalf("max below min not clamped: %v %v", c.pollMin, c.pollMax)
	}
}
