package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/protocol"
)

func TestBalanceConsumer(t *testing.T) {
	d := newAPIDouble(t)
	code, out, errs := runCmd(context.Background(), cmdBalance, d.args(), "")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"Statement for 12D3KooWMe, signed by the verifier at 2023-11-14 22:13:20 UTC\n",
		"Consumer\n",
		"  available balance           12.50\n",
		"  held in escrow               0.40\n",
		"  spent                        3.21\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Worker") {
		t.Errorf("a consumer's statement shows the worker section:\n%s", out)
	}
}

func TestBalanceWorkerWithRating(t *testing.T) {
	d := newAPIDouble(t)
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	sealed, err := protocol.Seal(key, &protocol.Rating{Worker: id, Speed: 1250, ReliabilityPPM: 992_000, Strikes: 2, Expires: 1700000000000})
	if err != nil {
		t.Fatal(err)
	}
	rating, _ := json.Marshal(sealed)
	d.mu.Lock()
	d.role = "worker"
	d.stmt = strings.Replace(d.stmt, `"Strikes":2`, `"Strikes":2,"Rating":`+string(rating), 1)
	d.mu.Unlock()

	// The rating is signed by a key that is not the node's verifier.
	code, out, _ := runCmd(context.Background(), cmdBalance, d.args(), "")
	if code != 0 || !strings.Contains(out, "not by the verifier 12D3KooWVerifier: ignored") {
		t.Fatalf("exit %d, a rating not signed by the verifier was shown:\n%s", code, out)
	}
	// Signed by the verifier: shown.
	d.mu.Lock()
	d.role, d.verifier = "both", id.String()
	d.mu.Unlock()
	code, out, errs := runCmd(context.Background(), cmdBalance, d.args(), "")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"Consumer\n", "Worker\n",
		"  earned                       1.50\n",
		"  pending payout               0.25\n",
		"  paid out                     1.25\n",
		"  strikes                         2\n",
		"  rating: speed 1.25, reliability 99.2%, 2 strikes, valid until 2023-11-14 22:13 UTC\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runCmd(context.Background(), cmdBalance, d.args("--json"), "")
	var st map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st["Balance"] != float64(12500000) {
		t.Fatalf("--json: exit %d, %s", code, out)
	}
}

func TestBalanceErrors(t *testing.T) {
	d := newAPIDouble(t)
	if code, _, errs := runCmd(context.Background(), cmdBalance, []string{"--api", d.srv.URL, "--token", "bad"}, ""); code != 1 || !strings.Contains(errs, "refused the API token") {
		t.Errorf("wrong token: exit %d, %s", code, errs)
	}
	if code, _, _ := runCmd(context.Background(), cmdBalance, d.args("extra"), ""); code != 2 {
		t.Errorf("extra argument: exit %d", code)
	}
	dir := t.TempDir()
	t.Setenv("ASPEN_API", "")
	t.Setenv("ASPEN_TOKEN", "")
	if code, _, errs := runCmd(context.Background(), cmdBalance, []string{"--data", dir}, ""); code != 1 || !strings.Contains(errs, "is the node running?") {
		t.Errorf("no node: exit %d, %s", code, errs)
	}
}

func TestOpenRating(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := peer.IDFromPrivateKey(key)
	sealed, err := protocol.Seal(key, &protocol.Rating{Worker: verifier, Speed: 1250, ReliabilityPPM: 990_000, Strikes: 1, Issued: 1, Expires: 2})
	if err != nil {
		t.Fatal(err)
	}
	r, signer, err := openRating(&client.Statement{Rating: sealed})
	want := client.Rating{Worker: verifier.String(), Speed: 1250, ReliabilityPPM: 990_000, Strikes: 1, Issued: 1, Expires: 2}
	if err != nil || *r != want || signer != verifier.String() {
		t.Fatalf("openRating = %+v %q %v", r, signer, err)
	}
	if r, s, err := openRating(&client.Statement{}); r != nil || s != "" || err != nil {
		t.Fatalf("no rating: %v %q %v", r, s, err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, _, err := openRating(&client.Statement{Rating: sealed}); err == nil {
		t.Fatal("a tampered rating opened")
	}
}
