package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
)

// Check is one finding of Doctor: what was checked, whether it is fine,
// what was seen and, when it is not fine, one line on what to do.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Doctor thresholds.
const (
	// DoctorMinFree is the free space below which the data directory
	// check fails (the store, module cache and blobs live there).
	DoctorMinFree = 1 << 30
	// DoctorMaxSkew is the clock difference with the verifier beyond
	// which the clock check fails; messages more than
	// protocol.MaxClockSkew off are refused.
	DoctorMaxSkew = 30 * time.Second
)

// Doctor checks what a node needs from its machine and network: the data
// directory (exists, writable, free space), the connection to the pinned
// verifier, the clock against the verifier's, and reachability (public,
// behind NAT with a relay, or unreachable). When the node is running
// (its API in the data directory answers) its own reachability is
// reported; otherwise a probe host with the node's identity finds it,
// waiting up to wait for AutoNAT's verdict. cfg is the node's
// configuration (Logger, if set, gets the probe's logs).
func Doctor(ctx context.Context, cfg Config, wait time.Duration) []Check {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var checks []Check
	checks = append(checks, checkDataDir(cfg.DataDir))
	running, runErr := runningNetwork(ctx, cfg.DataDir)

	key, err := doctorKey(cfg.DataDir, running != nil)
	if err != nil {
		return append(checks, Check{Name: "identity", Detail: err.Error(),
			Fix: "run 'aspen-node init' (or fix the key file's permissions: mode 0600, owned by you)"})
	}
	pcfg := p2p.DefaultConfig()
	pcfg.Key = key
	pcfg.Logger = cfg.Logger
	pcfg.Pinned = []peer.AddrInfo{cfg.Verifier}
	if running == nil {
		// Not running: the probe stands in for the node, on the node's
		// listen addresses, and reserves relay slots as it would.
		if len(cfg.Listen) > 0 {
			pcfg.ListenAddrs = cfg.Listen
		}
		if len(cfg.Verifier.Addrs) > 0 {
			pcfg.Relays = append(pcfg.Relays, cfg.Verifier)
		}
		for _, r := range cfg.Relays {
			if ai, err := p2p.ParseAddrInfo(r); err == nil && len(ai.Addrs) > 0 {
				pcfg.Relays = append(pcfg.Relays, ai)
			}
		}
	} else {
		// Running: a throwaway identity on other ports checks the
		// verifier and the clock; reachability is the node's own.
		pcfg.ListenAddrs = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}
	}
	h, err := p2p.New(pcfg)
	if err != nil {
		return append(checks, Check{Name: "network", Detail: fmt.Sprintf("cannot start a libp2p host: %v", err),
			Fix: "check the listen addresses in config.json (--listen) and that no other program holds their ports"})
	}
	defer h.Close()
	if err := h.Start(ctx); err != nil {
		return append(checks, Check{Name: "network", Detail: err.Error(), Fix: "retry; if it persists, report it"})
	}
	vc, connected := checkVerifier(ctx, h, cfg)
	checks = append(checks, vc)
	if connected {
		checks = append(checks, checkClock(ctx, h, cfg))
	}
	switch {
	case running != nil:
		checks = append(checks, reachabilityCheck(running.Reachability, running.VerifierPath, "the running node"))
	case !connected:
		checks = append(checks, Check{Name: "reachability", OK: false,
			Detail: "not checked: the verifier is needed to tell (it answers AutoNAT and relays for nodes behind NAT)",
			Fix:    "fix the verifier connection first"})
	default:
		if runErr != nil {
			cfg.Logger.Debug("node API not answering; probing as the node", "err", runErr)
		}
		checks = append(checks, reachabilityCheck(waitReach(ctx, h, wait).Reachability, h.PathTo(cfg.Verifier.ID), "a probe with the node's identity"))
	}
	return checks
}

// Failed reports whether any check failed.
func Failed(checks []Check) bool {
	for _, c := range checks {
		if !c.OK {
			return true
		}
	}
	return false
}

func checkDataDir(dir string) Check {
	c := Check{Name: "data directory"}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		c.Detail = dir + " does not exist"
		c.Fix = "run 'aspen-node init --data " + dir + "' (or point --data / ASPEN_DATA at your data directory)"
		return c
	case err != nil:
		c.Detail = err.Error()
		c.Fix = "check the path and its permissions"
		return c
	case !st.IsDir():
		c.Detail = dir + " is not a directory"
		c.Fix = "point --data / ASPEN_DATA at a directory"
		return c
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		c.Detail = fmt.Sprintf("%s is not writable: %v", dir, err)
		c.Fix = "run as the user that owns it (the systemd unit runs as 'aspen') or fix its permissions"
		return c
	}
	f.Close()
	os.Remove(f.Name())
	free, err := diskFree(dir)
	if err != nil {
		c.OK = true
		c.Detail = fmt.Sprintf("%s: writable (free space unknown: %v)", dir, err)
		return c
	}
	c.Detail = fmt.Sprintf("%s: writable, %s free", dir, byteSize(free))
	if free < DoctorMinFree {
		c.Fix = fmt.Sprintf("free some space (at least %s) or move the data directory to a larger disk", byteSize(DoctorMinFree))
		return c
	}
	c.OK = true
	return c
}

// runningNetwork asks the node's own API (DATA/api.addr) for its network
// view; nil when it does not answer.
func runningNetwork(ctx context.Context, dir string) (*Network, error) {
	addr, err := os.ReadFile(filepath.Join(dir, AddrFile))
	if err != nil {
		return nil, err
	}
	tok, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+strings.TrimSpace(string(addr))+"/v1/info", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node API: %s", resp.Status)
	}
	var in Info
	if err := json.NewDecoder(resp.Body).Decode(&in); err != nil {
		return nil, fmt.Errorf("node API: %w", err)
	}
	return &in.Network, nil
}

// doctorKey is the node's identity, or a throwaway one when the node is
// running (two hosts must not share a peer ID).
func doctorKey(dir string, running bool) (crypto.PrivKey, error) {
	if running {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		return k, err
	}
	path := filepath.Join(dir, KeyFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no identity key: %w", err)
	}
	return p2p.LoadOrCreateKey(path)
}

func checkVerifier(ctx context.Context, h *p2p.Host, cfg Config) (Check, bool) {
	c := Check{Name: "verifier"}
	if len(cfg.Verifier.Addrs) == 0 {
		c.Detail = fmt.Sprintf("only the verifier's peer ID %s is configured, no address", cfg.Verifier.ID)
		c.Fix = "give the verifier's full address: --verifier /ip4/ADDR/tcp/PORT/p2p/ID (ask the operator)"
		return c, false
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err := h.Connect(cctx, cfg.Verifier)
	cancel()
	if err != nil {
		c.Detail = fmt.Sprintf("cannot connect to %s at %v: %v", cfg.Verifier.ID, cfg.Verifier.Addrs, err)
		c.Fix = "check --verifier (address and peer ID, from the operator) and that outgoing TCP/UDP to it is allowed"
		return c, false
	}
	c.OK = true
	c.Detail = fmt.Sprintf("connected to %s in %s (%s; its identity checked by the handshake)",
		cfg.Verifier.ID, time.Since(start).Round(time.Millisecond), h.PathTo(cfg.Verifier.ID))
	return c, true
}

// checkClock compares the verifier's clock (a statement's Issued time) with
// ours, within half the round trip.
func checkClock(ctx context.Context, h *p2p.Host, cfg Config) Check {
	c := Check{Name: "clock"}
	req := &protocol.StatementRequest{Peer: h.ID(), Nonce: protocol.NewID(), Time: time.Now().UnixMilli()}
	var st protocol.Statement
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	sent := time.Now()
	err := h.Request(rctx, cfg.Verifier.ID, protocol.ProtoStatement, req, &st)
	got := time.Now()
	cancel()
	var re *p2p.RemoteError
	if errors.As(err, &re) && re.Code == protocol.AckExpired {
		c.Detail = "the verifier refused a request for its time stamp: " + re.Message
		c.Fix = "set the clock right: enable time synchronisation (timedatectl set-ntp true, or chrony/ntpd)"
		return c
	}
	if err != nil {
		c.Detail = fmt.Sprintf("could not ask the verifier for its time: %v", err)
		c.Fix = "retry; if it persists, the verifier may be overloaded or too old"
		return c
	}
	rtt := got.Sub(sent)
	mid := sent.Add(rtt / 2)
	skew := time.UnixMilli(st.Issued).Sub(mid)
	c.Detail = fmt.Sprintf("%s from the verifier's (±%s)", signed(skew), (rtt/2 + time.Millisecond).Round(time.Millisecond))
	if skew.Abs() > DoctorMaxSkew+rtt/2 {
		c.Fix = fmt.Sprintf("set the clock right (messages more than %s off are refused): enable time synchronisation (timedatectl set-ntp true, or chrony/ntpd)", protocol.MaxClockSkew)
		return c
	}
	c.OK = true
	return c
}

func signed(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// waitReach waits until the host's reachability is decided (public, or
// private with or without a relay after a moment to reserve one) or wait
// passes.
func waitReach(ctx context.Context, h *p2p.Host, wait time.Duration) Network {
	changed := make(chan struct{}, 1)
	h.OnReachability(func(p2p.Reachability) {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	var grace <-chan time.Time // private: a few seconds to reserve a relay slot
	for {
		r := h.Reachability()
		if r.Status == p2p.ReachPublic || r.Inbound == p2p.InboundRelayed {
			return Network{Reachability: r}
		}
		if r.Status == p2p.ReachPrivate && grace == nil {
			t := time.NewTimer(10 * time.Second)
			defer t.Stop()
			grace = t.C
		}
		select {
		case <-changed:
		case <-grace:
			return Network{Reachability: h.Reachability()}
		case <-deadline.C:
			return Network{Reachability: h.Reachability()}
		case <-ctx.Done():
			return Network{Reachability: h.Reachability()}
		}
	}
}

// reachabilityCheck judges a node's network view (who: whose view it is).
func reachabilityCheck(r p2p.Reachability, verifierPath p2p.Path, who string) Check {
	c := Check{Name: "reachability", OK: true}
	nw := Network{Reachability: r, VerifierPath: verifierPath}
	c.Detail = nw.Summary() + " (" + who + ")"
	if r.Status == p2p.ReachPrivate && r.Inbound == p2p.InboundNone {
		c.OK = false
		c.Fix = "peers cannot reach this node: the verifier relays for registered workers and funded consumers — " +
			"register (start the worker) or get credit, and keep the verifier reachable; or forward the node's TCP and UDP listen ports on your router"
	}
	return c
}

// Summary is a one-line description of how peers reach the node.
func (nw Network) Summary() string {
	r := nw.Reachability
	var s string
	switch {
	case r.Status == p2p.ReachPublic:
		s = "public: peers dial it directly"
		if len(r.Reachable) > 0 {
			s += " at " + strings.Join(r.Reachable, ", ")
		} else if len(r.Public) > 0 {
			s += " at " + strings.Join(r.Public, ", ")
		}
	case r.Status == p2p.ReachPrivate && r.Inbound == p2p.InboundRelayed:
		s = fmt.Sprintf("behind NAT: peers reach it through %d relayed address(es) (%s); blobs larger than the relay allows need a direct connection, which hole punching opens unless both ends are behind symmetric NATs",
			len(r.Relays), strings.Join(r.Relays, ", "))
	case r.Status == p2p.ReachPrivate:
		s = "behind NAT, and no relay reservation (yet): peers cannot reach it"
	default:
		s = "not determined yet (no AutoNAT answer: a node without public addresses, e.g. on loopback, stays unknown)"
	}
	if nw.VerifierPath != "" {
		s += "; verifier connection: " + string(nw.VerifierPath)
	}
	return s
}

func byteSize(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
