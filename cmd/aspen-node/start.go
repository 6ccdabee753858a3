package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/internal/buildinfo"
	"github.com/aspen-market/aspen/internal/cli"
	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
)

// fileConfig is the node's config.json: what init writes and start reads.
// Flags and ASPEN_* environment variables override it.
type fileConfig struct {
	Listen    []string `json:"listen"`
	Bootstrap []string `json:"bootstrap,omitempty"`
	Relays    []string `json:"relays,omitempty"` // operator relays (multiaddrs with /p2p/ID), besides the verifier
	Verifier  string   `json:"verifier"`         // multiaddr with /p2p/ID, or a bare peer ID
	Role      string   `json:"role"`
	MinPrice  string   `json:"min_price"` // per hour, decimal
	Slots     int      `json:"slots"`
	Owner     string   `json:"owner,omitempty"`
	API       string   `json:"api"`
	// APIAllowRemote lets API be a non-loopback address (node.Config).
	APIAllowRemote bool   `json:"api_allow_remote,omitempty"`
	MaxMemory      string `json:"max_memory,omitempty"`
}

func defaultDataDir() string {
	if d := os.Getenv("ASPEN_DATA"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".aspen"
	}
	return filepath.Join(home, ".aspen")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// nodeFlags are shared by init and start.
type nodeFlags struct {
	data, verifier, role, minPrice, owner, api, maxMemory string
	slots                                                 int
	listen, bootstrap, relays                             []string
	apiAllowRemote                                        bool
}

func (f *nodeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.data, "data", defaultDataDir(), "data directory (env ASPEN_DATA)")
	fs.StringVar(&f.verifier, "verifier", os.Getenv("ASPEN_VERIFIER"), "the verifier's multiaddr with /p2p/ID (pinned; env ASPEN_VERIFIER)")
	fs.StringVar(&f.role, "role", os.Getenv("ASPEN_ROLE"), "worker, consumer or both (env ASPEN_ROLE)")
	fs.StringVar(&f.minPrice, "min-price", os.Getenv("ASPEN_MIN_PRICE"), "worker's minimum price per hour, e.g. 0.02 (env ASPEN_MIN_PRICE)")
	fs.IntVar(&f.slots, "slots", 0, "jobs a worker runs at once (default 1)")
	fs.StringVar(&f.owner, "owner", os.Getenv("ASPEN_OWNER"), "owner label for payouts")
	fs.StringVar(&f.api, "api", os.Getenv("ASPEN_API_LISTEN"), "local API listen address (default 127.0.0.1:7341; loopback only unless --api-allow-remote)")
	fs.BoolVar(&f.apiAllowRemote, "api-allow-remote", false, "let --api be a non-loopback address (e.g. 0.0.0.0 in a container)")
	fs.StringVar(&f.maxMemory, "max-memory", "", "memory cap per job, e.g. 256MiB")
	fs.StringArrayVar(&f.listen, "listen", nil, "libp2p listen multiaddr (repeatable)")
	fs.StringArrayVar(&f.bootstrap, "bootstrap", nil, "bootstrap peer multiaddr (repeatable)")
	fs.StringArrayVar(&f.relays, "relay", nil, "an operator's relay, multiaddr with /p2p/ID, used behind NAT besides the verifier (repeatable)")
}

func registerLogFlags(fs *pflag.FlagSet, format, level *string) {
	fs.StringVar(format, "log-format", "text", "log format: text or json")
	fs.StringVar(level, "log-level", "info", "log level: debug, info, warn, error")
}

func (f *nodeFlags) merge(fc *fileConfig) {
	if f.verifier != "" {
		fc.Verifier = f.verifier
	}
	if f.role != "" {
		fc.Role = f.role
	}
	if f.minPrice != "" {
		fc.MinPrice = f.minPrice
	}
	if f.slots > 0 {
		fc.Slots = f.slots
	}
	if f.owner != "" {
		fc.Owner = f.owner
	}
	if f.api != "" {
		fc.API = f.api
	}
	if f.apiAllowRemote {
		fc.APIAllowRemote = true
	}
	if f.maxMemory != "" {
		fc.MaxMemory = f.maxMemory
	}
	if len(f.listen) > 0 {
		fc.Listen = f.listen
	}
	if len(f.bootstrap) > 0 {
		fc.Bootstrap = f.bootstrap
	}
	if len(f.relays) > 0 {
		fc.Relays = f.relays
	}
}

func configPath(data string) string { return filepath.Join(data, "config.json") }

func readFileConfig(data string) (fileConfig, error) {
	d := node.DefaultConfig()
	fc := fileConfig{Listen: d.Listen, Role: d.Role.String(), MinPrice: d.MinPrice.String(), Slots: d.Slots, API: d.APIAddr}
	b, err := os.ReadFile(configPath(data))
	if errors.Is(err, os.ErrNotExist) {
		return fc, nil
	} else if err != nil {
		return fc, err
	}
	if err := json.Unmarshal(b, &fc); err != nil {
		return fc, fmt.Errorf("%s: %w", configPath(data), err)
	}
	return fc, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func initCommand() *cobra.Command {
	var f nodeFlags
	var fc fileConfig
	cmd := &cobra.Command{
		Use:   "init",
		Short: "create a data directory: identity key, API token, config",
		Long: `Creates the node's data directory (--data) with its identity key, local API
token and config.json, from the flags given (and what an earlier init wrote).
Every setting is checked here: a role, price, address or size that start
would refuse is refused now, with exit status 2.`,
		Example: `  aspen-node init --role worker --min-price 0.02 --slots 2 --verifier /ip4/203.0.113.7/tcp/7400/p2p/12D3KooW...
  aspen-node init --role consumer --verifier /ip4/203.0.113.7/tcp/7400/p2p/12D3KooW...`,
		Args: cli.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if fc, err = readFileConfig(f.data); err != nil {
				return err
			}
			if f.slots < 0 {
				return cli.Usagef("--slots %d: want 1 to 1024", f.slots)
			}
			f.merge(&fc)
			if err := validateFileConfig(fc, false); err != nil {
				return cli.UsageError{Err: err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			stdout := cmd.OutOrStdout()
			if err := os.MkdirAll(f.data, 0o700); err != nil {
				return err
			}
			key, err := p2p.LoadOrCreateKey(filepath.Join(f.data, node.KeyFile))
			if err != nil {
				return err
			}
			if _, err := node.LoadOrCreateToken(filepath.Join(f.data, node.TokenFile)); err != nil {
				return err
			}
			b, _ := json.MarshalIndent(fc, "", "  ")
			if err := os.WriteFile(configPath(f.data), append(b, '\n'), 0o600); err != nil {
				return err
			}
			id, _ := peer.IDFromPrivateKey(key)
			fmt.Fprintf(stdout, "initialized %s\npeer ID: %s\n", f.data, id)
			if fc.Verifier == "" {
				fmt.Fprintln(stdout, "next: set the verifier with 'aspen-node init --verifier /ip4/.../p2p/ID' or ASPEN_VERIFIER")
			} else {
				fmt.Fprintf(stdout, "next: aspen-node start --data %s\n", f.data)
			}
			return nil
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// validateFileConfig checks every setting as start would use it; the
// verifier may be missing at init (needVerifier false).
func validateFileConfig(fc fileConfig, needVerifier bool) error {
	if fc.Verifier != "" || needVerifier {
		if _, err := parseVerifier(fc.Verifier); err != nil {
			return err
		}
	}
	if _, err := node.ParseRole(fc.Role); err != nil {
		return fmt.Errorf("--role %q: want worker, consumer or both", fc.Role)
	}
	if _, err := protocol.ParseAmount(fc.MinPrice); err != nil {
		return fmt.Errorf("--min-price %q: want a decimal amount per hour, e.g. 0.02", fc.MinPrice)
	}
	if fc.Slots < 0 || fc.Slots > 1024 {
		return fmt.Errorf("--slots %d: want 1 to 1024", fc.Slots)
	}
	if fc.MaxMemory != "" {
		if _, err := parseSize(fc.MaxMemory); err != nil {
			return fmt.Errorf("--max-memory: %w", err)
		}
	}
	for _, l := range fc.Listen {
		if _, err := ma.NewMultiaddr(l); err != nil {
			return fmt.Errorf("--listen %q: %w", l, err)
		}
	}
	for _, b := range fc.Bootstrap {
		a, err := ma.NewMultiaddr(b)
		if err == nil {
			_, err = peer.AddrInfoFromP2pAddr(a)
		}
		if err != nil {
			return fmt.Errorf("--bootstrap %q: want a multiaddr ending in /p2p/ID: %w", b, err)
		}
	}
	for _, r := range fc.Relays {
		a, err := ma.NewMultiaddr(r)
		if err == nil {
			_, err = peer.AddrInfoFromP2pAddr(a)
		}
		if err != nil || !strings.HasPrefix(r, "/") || strings.HasPrefix(r, "/p2p/") {
			return fmt.Errorf("--relay %q: want an address ending in /p2p/ID, e.g. /ip4/203.0.113.8/tcp/4001/p2p/12D3KooW...", r)
		}
	}
	if fc.API != "" {
		if _, _, err := net.SplitHostPort(fc.API); err != nil {
			return fmt.Errorf("--api %q: want HOST:PORT, e.g. 127.0.0.1:7341: %w", fc.API, err)
		}
		if node.CheckAPIAddr(fc.API, fc.APIAllowRemote) != nil {
			return fmt.Errorf("--api %q is not a loopback address: the API would be reachable from other machines; add --api-allow-remote to mean it", fc.API)
		}
	}
	return nil
}

// parseVerifier accepts a full multiaddr with /p2p/ID or a bare peer ID.
func parseVerifier(s string) (peer.AddrInfo, error) {
	if s == "" {
		return peer.AddrInfo{}, errors.New("no verifier configured: pass --verifier MULTIADDR/p2p/ID or set ASPEN_VERIFIER")
	}
	if strings.HasPrefix(s, "/") {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return peer.AddrInfo{}, fmt.Errorf("verifier address: %w", err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return peer.AddrInfo{}, fmt.Errorf("verifier address must end in /p2p/ID: %w", err)
		}
		return *ai, nil
	}
	id, err := peer.Decode(s)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("verifier peer ID: %w", err)
	}
	return peer.AddrInfo{ID: id}, nil
}

// parseSize parses sizes like 256MiB, 1GiB, 512KiB, 1000.
func parseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	mult := uint64(1)
	for _, u := range []struct {
		suffix string
		m      uint64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	var v uint64
	if _, err := fmt.Sscanf(s, "%d", &v); err != nil || fmt.Sprint(v) != s {
		return 0, fmt.Errorf("bad size %q (want e.g. 256MiB)", s)
	}
	return v * mult, nil
}

func buildNodeConfig(fc fileConfig, data string, log *slog.Logger) (node.Config, error) {
	cfg := node.DefaultConfig()
	cfg.DataDir = data
	cfg.Logger = log
	var err error
	if cfg.Verifier, err = parseVerifier(fc.Verifier); err != nil {
		return cfg, err
	}
	if cfg.Role, err = node.ParseRole(fc.Role); err != nil {
		return cfg, err
	}
	if cfg.MinPrice, err = protocol.ParseAmount(fc.MinPrice); err != nil {
		return cfg, fmt.Errorf("min price: %w", err)
	}
	if fc.Slots > 0 {
		cfg.Slots = fc.Slots
	}
	cfg.Owner = fc.Owner
	cfg.APIAddr = fc.API
	cfg.APIAllowRemote = fc.APIAllowRemote
	cfg.Listen = fc.Listen
	cfg.Bootstrap = fc.Bootstrap
	cfg.Relays = fc.Relays
	if fc.MaxMemory != "" {
		if cfg.Sandbox.MaxMemory, err = parseSize(fc.MaxMemory); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func startCommand() *cobra.Command {
	var f nodeFlags
	var logFormat, logLevel string
	var cfg node.Config
	cmd := &cobra.Command{
		Use:   "start",
		Short: "run the node (worker, consumer or both)",
		Long: `Runs the node from its data directory's config.json (see 'aspen-node init'),
with flags and ASPEN_* environment variables overriding it, until Ctrl-C or
SIGTERM. It prints the peer ID, the listen addresses and a dashboard link,
then a "network:" line each time its reachability changes: public, behind
NAT and reachable through a relay, or unreachable (with what to do).`,
		Args: cli.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return cli.UsageError{Err: err}
			}
			fc, err := readFileConfig(f.data)
			if err != nil {
				return err
			}
			if f.slots < 0 {
				return cli.Usagef("--slots %d: want 1 to 1024", f.slots)
			}
			f.merge(&fc)
			if err := validateFileConfig(fc, true); err != nil {
				return cli.UsageError{Err: err}
			}
			cfg, err = buildNodeConfig(fc, f.data, log)
			if err != nil {
				return cli.UsageError{Err: err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stdout := cmd.Context(), cmd.OutOrStdout()
			n, err := node.New(cfg)
			if err != nil {
				return err
			}
			if err := n.Start(ctx); err != nil {
				n.Close()
				return err
			}
			fmt.Fprintf(stdout, "aspen-node %s running as %s\npeer ID: %s\n", buildinfo.Read().Version, cfg.Role, n.ID())
			for _, a := range n.Addrs() {
				fmt.Fprintf(stdout, "listening: %s\n", a)
			}
			if n.APIAddr() != "" {
				fmt.Fprintf(stdout, "local API: http://%s (token in %s)\n", n.APIAddr(), filepath.Join(f.data, node.TokenFile))
				fmt.Fprintf(stdout, "dashboard: http://%s/#token=%s\n", n.APIAddr(), n.Token())
			}
			rp := &reachPrinter{w: stdout}
			n.OnReachability(func(p2p.Reachability) { rp.print(n) })
			rp.print(n)
			<-ctx.Done()
			rp.stop()
			fmt.Fprintln(stdout, "shutting down")
			return n.Close()
		},
	}
	f.register(cmd.Flags())
	registerLogFlags(cmd.Flags(), &logFormat, &logLevel)
	return cmd
}

// reachPrinter prints the node's reachability when it changes.
type reachPrinter struct {
	mu      sync.Mutex
	w       io.Writer
	last    string
	stopped bool
}

func (r *reachPrinter) print(n *node.Node) {
	line := "network: " + n.Network().Summary()
	if why, bad := n.Unreachable(); bad {
		line += "\n  what to do: " + why
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || line == r.last {
		return
	}
	r.last = line
	fmt.Fprintln(r.w, line)
}

func (r *reachPrinter) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
}
