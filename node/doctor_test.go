package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/verifier"
)

// startVerifierOnly starts a verifier whose clock is off by skew.
func startVerifierOnly(t *testing.T, skew time.Duration) *verifier.Verifier {
	t.Helper()
	vcfg := verifier.DefaultConfig()
	vcfg.DataDir = filepath.Join(t.TempDir(), "verifier")
	vcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	vcfg.APIAddr = ""
	vcfg.Logger = quietLogger()
	vcfg.Now = func() time.Time { return time.Now().Add(skew) }
	v, err := verifier.New(vcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		v.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// doctorConfig is a consumer's configuration with an initialised data
// directory (identity key) that is not running.
func doctorConfig(t *testing.T, v *verifier.Verifier) node.Config {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "node")
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Verifier = v.AddrInfo()
	cfg.Role = node.RoleConsumer
	cfg.APIAddr = "127.0.0.1:0"
	cfg.Logger = quietLogger()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := p2p.LoadOrCreateKey(filepath.Join(cfg.DataDir, node.KeyFile)); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func checkNamed(t *testing.T, cs []node.Check, name string) node.Check {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %q check in %+v", name, cs)
	return node.Check{}
}

func TestDoctorHealthyNode(t *testing.T) {
	v := startVerifierOnly(t, 0)
	cfg := doctorConfig(t, v)
	ctx := context.Background()

	// Stopped: a probe with the node's identity.
	cs := node.Doctor(ctx, cfg, time.Second)
	if node.Failed(cs) {
		t.Fatalf("healthy stopped node: %+v", cs)
	}
	for _, name := range []string{"data directory", "verifier", "clock", "reachability"} {
		c := checkNamed(t, cs, name)
		if c.Detail == "" || c.Fix != "" {
			t.Errorf("%s: %+v", name, c)
		}
	}
	if c := checkNamed(t, cs, "clock"); !strings.HasPrefix(c.Detail, "+") && !strings.HasPrefix(c.Detail, "-") {
		t.Errorf("clock detail %q, want a signed offset", c.Detail)
	}
	if c := checkNamed(t, cs, "reachability"); !strings.Contains(c.Detail, "not determined") || !strings.Contains(c.Detail, "probe") {
		t.Errorf("reachability on loopback: %q", c.Detail)
	}

	// Running: its own API answers for reachability.
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	defer n.Close()
	cs = node.Doctor(ctx, cfg, time.Second)
	if node.Failed(cs) {
		t.Fatalf("healthy running node: %+v", cs)
	}
	if c := checkNamed(t, cs, "reachability"); !strings.Contains(c.Detail, "the running node") || !strings.Contains(c.Detail, "verifier connection: direct") {
		t.Errorf("reachability of the running node: %q", c.Detail)
	}
}

func TestDoctorFindsProblems(t *testing.T) {
	ctx := context.Background()

	// The verifier's clock is 45 s ahead: beyond DoctorMaxSkew, within
	// what messages tolerate.
	v := startVerifierOnly(t, 45*time.Second)
	cfg := doctorConfig(t, v)
	cs := node.Doctor(ctx, cfg, time.Second)
	if c := checkNamed(t, cs, "clock"); c.OK || !strings.HasPrefix(c.Detail, "+4") || c.Fix == "" {
		t.Errorf("clock 45 s behind the verifier's: %+v", c)
	}
	if !node.Failed(cs) {
		t.Error("Failed is false with a failed check")
	}

	// 5 min: the verifier refuses the request itself.
	far := startVerifierOnly(t, 5*time.Minute)
	cs = node.Doctor(ctx, doctorConfig(t, far), time.Second)
	if c := checkNamed(t, cs, "clock"); c.OK || !strings.Contains(c.Detail, "refused") || c.Fix == "" {
		t.Errorf("clock 5 min off: %+v", c)
	}

	// A verifier address where nothing listens.
	bad := doctorConfig(t, v)
	key, err := p2p.LoadOrCreateKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	bad.Verifier = peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}}
	cs = node.Doctor(ctx, bad, time.Second)
	if c := checkNamed(t, cs, "verifier"); c.OK || c.Fix == "" {
		t.Errorf("unreachable verifier: %+v", c)
	}
	if c := checkNamed(t, cs, "reachability"); c.OK || !strings.Contains(c.Detail, "not checked") {
		t.Errorf("reachability without a verifier: %+v", c)
	}

	// No data directory.
	gone := doctorConfig(t, v)
	gone.DataDir = filepath.Join(t.TempDir(), "missing")
	cs = node.Doctor(ctx, gone, time.Second)
	if c := checkNamed(t, cs, "data directory"); c.OK || !strings.Contains(c.Fix, "aspen-node init") {
		t.Errorf("missing data directory: %+v", c)
	}
	if c := checkNamed(t, cs, "identity"); c.OK || c.Fix == "" {
		t.Errorf("missing identity: %+v", c)
	}
}
