package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/verifier"
)

func TestMain(m *testing.M) {
	sandbox.RunChildIfRequested()
	goleak.VerifyTestMain(m)
}

func runCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String() + errb.String(), code
}

func TestPPM(t *testing.T) {
	for in, want := range map[string]uint32{"0.05": 50_000, "0": 0, "1": 1_000_000, "0.000001": 1, "0.15": 150_000} {
		got, err := parsePPM("x", in)
		if err != nil || got != want {
			t.Errorf("parsePPM(%q) = %d, %v", in, got, err)
		}
		if back, _ := parsePPM("x", ppmString(got)); back != got {
			t.Errorf("ppmString(%d) = %q does not parse back", got, ppmString(got))
		}
	}
	for _, bad := range []string{"1.5", "-0.1", "abc", "0.0000001"} {
		if _, err := parsePPM("x", bad); err == nil {
			t.Errorf("parsePPM(%q) accepted", bad)
		}
	}
}

func TestInitAndOperatorCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	out, code := runCmd(t, "init", "--data", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	if code != 0 || !strings.Contains(out, "peer ID: 12D3") {
		t.Fatalf("init: %d %s", code, out)
	}
	for _, f := range []string{verifier.KeyFile, verifier.TokenFile, verifier.ConfigFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, err, st.Mode())
		}
	}
	fc, err := readFileConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := verifier.DefaultConfig()
	cfg.DataDir = dir
	if err := fc.apply(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.APIAddr != "127.0.0.1:0" || cfg.Market.SpotCheckPPM != 50_000 || !cfg.Market.VerifierTiebreak {
		t.Fatalf("config from file: %+v", cfg)
	}
	cfg.Sandbox.Nice = 0
	v, err := verifier.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	peerID := "12D3KooWFrubCmmBN2fbA1g4pmULSa4K3p96rmrwdsJZJjBRmU39"
	if out, code := runCmd(t, "credit", "--data", dir, peerID, "12.5"); code != 1 || !strings.Contains(out, "knows no peer") {
		t.Fatalf("credit to a peer the verifier does not know: %d %s", code, out)
	}
	if out, code := runCmd(t, "credit", "--data", dir, peerID, "12.5", "--new", "--ref", "inv-1"); code != 0 || !strings.Contains(out, "balance 12.50") {
		t.Fatalf("credit: %d %s", code, out)
	}
	if out, code := runCmd(t, "credit", "--data", dir, peerID, "12.5", "--ref", "inv-1"); code != 0 || !strings.Contains(out, `already credited: ref "inv-1" credited 12.50`) || !strings.Contains(out, "balance 12.50") {
		t.Fatalf("repeated credit: %d %s", code, out)
	}
	if out, code := runCmd(t, "credit", "--data", dir, peerID, "-3"); code == 0 {
		t.Fatalf("negative credit accepted: %s", out)
	}
	if out, code := runCmd(t, "accounts", "--data", dir); code != 0 || !strings.Contains(out, "consumer:"+peerID) || !strings.Contains(out, "-12.50") {
		t.Fatalf("accounts: %d %s", code, out)
	}
	if out, code := runCmd(t, "ledger", "--data", dir, "--account", peerID); code != 0 || !strings.Contains(out, "credit/") {
		t.Fatalf("ledger: %d %s", code, out)
	}
	if out, code := runCmd(t, "workers", "--data", dir); code != 0 || !strings.Contains(out, "WORKER") {
		t.Fatalf("workers: %d %s", code, out)
	}
	if out, code := runCmd(t, "groups", "--data", dir, "--all"); code != 0 || !strings.Contains(out, "GROUP") {
		t.Fatalf("groups: %d %s", code, out)
	}
	payDir := t.TempDir()
	if out, code := runCmd(t, "payouts", "--data", dir, "--threshold", "0.5", "--batch", "b1", "--out", payDir); code != 0 || !strings.Contains(out, "batch b1") {
		t.Fatalf("payouts: %d %s", code, out)
	}
	for _, f := range []string{"payout-b1.csv", "payout-b1.json"} {
		if _, err := os.Stat(filepath.Join(payDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	// Environment instead of the data directory; a wrong token is refused.
	t.Setenv("ASPEN_VERIFIER_API", "http://"+v.APIAddr())
	t.Setenv("ASPEN_VERIFIER_TOKEN", "not-the-token-at-all")
	if out, code := runCmd(t, "accounts", "--data", t.TempDir()); code == 0 || !strings.Contains(out, "refused the operator token") {
		t.Fatalf("wrong token: %d %s", code, out)
	}
	t.Setenv("ASPEN_VERIFIER_TOKEN", v.Token())
	if out, code := runCmd(t, "accounts", "--data", t.TempDir(), "--json"); code != 0 || !strings.Contains(out, `"total": 0`) {
		t.Fatalf("accounts via env: %d %s", code, out)
	}
	if b := mustBalance(t, v, peerID); b != 12_500_000 {
		t.Fatalf("balance %v", b)
	}
	if _, code := runCmd(t, "nonsense"); code != 2 {
		t.Fatal("unknown command accepted")
	}
}

func mustBalance(t *testing.T, v *verifier.Verifier, p string) protocol.Micros {
	b, err := v.Ledger().Balance("consumer:" + p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
