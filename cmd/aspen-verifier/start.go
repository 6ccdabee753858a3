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
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/aspen-market/aspen/internal/cli"

	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier"
)

// fileConfig is the verifier's config file (verifier.json in the data
// directory): what init writes and start reads; flags override it.
// Durations are Go durations ("10s", "2h"), rates decimal fractions
// ("0.05" = 5%), amounts decimal currency.
type fileConfig struct {
	Listen           []string `json:"listen"`
	API              string   `json:"api"`
	SpotCheckRate    string   `json:"spot_check_rate"`
	OperatorCut      string   `json:"operator_cut"`
	SpeedTolerance   string   `json:"speed_tolerance"`
	SpeedSlack       string   `json:"speed_slack"`
	MaxRunTime       string   `json:"max_run_time"`
	HeartbeatTimeout string   `json:"heartbeat_timeout"`
	MaxReplicas      int      `json:"max_replicas"`
	MaxExtraReplicas int      `json:"max_extra_replicas"`
	StrikesToExclude int      `json:"strikes_to_exclude"`
	VerifierTiebreak bool     `json:"verifier_tiebreak"`
	VerifierSlots    int      `json:"verifier_slots"`
	BenchmarkKernel  string   `json:"benchmark_kernel"`
	BenchmarkWork    int      `json:"benchmark_work"`
	BenchmarkTasks   int      `json:"benchmark_tasks"`
	RatingTTL        string   `json:"rating_ttl"`
	QueueDepth       int      `json:"queue_depth"`
	QueueDepthMin    int      `json:"queue_depth_min"`
	QueueTime        string   `json:"queue_time"`
	QueueTimeout     string   `json:"queue_timeout"`
	RestartGrace     string   `json:"restart_grace"`
	ReleaseGiveUp    string   `json:"release_give_up"`
}

func defaultFileConfig() fileConfig {
	d := verifier.DefaultConfig()
	m := d.Market
	return fileConfig{
		Listen: d.Listen, API: d.APIAddr,
		SpotCheckRate: ppmString(m.SpotCheckPPM), OperatorCut: ppmString(m.OperatorCutPPM), SpeedTolerance: ppmString(m.SpeedTolerancePPM), SpeedSlack: m.SpeedSlack.String(),
		MaxRunTime: m.MaxRunTime.String(), HeartbeatTimeout: m.HeartbeatTimeout.String(),
		MaxReplicas: m.MaxReplicas, MaxExtraReplicas: m.MaxExtraReplicas, StrikesToExclude: m.StrikesToExclude,
		VerifierTiebreak: m.VerifierTiebreak, VerifierSlots: d.VerifierSlots,
		BenchmarkKernel: d.BenchmarkKernel, BenchmarkWork: d.BenchmarkWork, BenchmarkTasks: d.BenchmarkTasks,
		RatingTTL: d.RatingTTL.String(), QueueDepth: d.QueueDepth, QueueDepthMin: d.QueueDepthMin, QueueTime: d.QueueTime.String(), QueueTimeout: d.QueueTimeout.String(),
		RestartGrace: d.RestartGrace.String(), ReleaseGiveUp: d.ReleaseGiveUp.String(),
	}
}

// ppmString formats parts per million as a decimal fraction.
func ppmString(v uint32) string {
	s := fmt.Sprintf("%d.%06d", v/1_000_000, v%1_000_000)
	s = strings.TrimRight(s, "0")
	if strings.HasSuffix(s, ".") {
		s += "0"
	}
	return s
}

// parsePPM parses a decimal fraction ("0.05") into parts per million.
func parsePPM(what, s string) (uint32, error) {
	m, err := protocol.ParseAmount(s) // six decimals: micro-units are ppm
	if err != nil || m > 1_000_000 {
		return 0, fmt.Errorf("%s %q: want a fraction between 0 and 1, e.g. 0.05", what, s)
	}
	return uint32(m), nil
}

// apply turns the file config into a verifier config.
func (fc fileConfig) apply(cfg *verifier.Config) error {
	var err error
	dur := func(what, s string, dst *time.Duration) {
		if err != nil || s == "" {
			return
		}
		d, e := time.ParseDuration(s)
		if e != nil {
			err = fmt.Errorf("%s %q: %v", what, s, e)
			return
		}
		*dst = d
	}
	ppm := func(what, s string, dst *uint32) {
		if err != nil || s == "" {
			return
		}
		*dst, err = parsePPM(what, s)
	}
	if len(fc.Listen) > 0 {
		cfg.Listen = fc.Listen
	}
	cfg.APIAddr = fc.API
	m := &cfg.Market
	ppm("spot_check_rate", fc.SpotCheckRate, &m.SpotCheckPPM)
	ppm("operator_cut", fc.OperatorCut, &m.OperatorCutPPM)
	ppm("speed_tolerance", fc.SpeedTolerance, &m.SpeedTolerancePPM)
	dur("speed_slack", fc.SpeedSlack, &m.SpeedSlack)
	dur("max_run_time", fc.MaxRunTime, &m.MaxRunTime)
	dur("heartbeat_timeout", fc.HeartbeatTimeout, &m.HeartbeatTimeout)
	dur("rating_ttl", fc.RatingTTL, &cfg.RatingTTL)
	dur("queue_timeout", fc.QueueTimeout, &cfg.QueueTimeout)
	dur("queue_time", fc.QueueTime, &cfg.QueueTime)
	dur("restart_grace", fc.RestartGrace, &cfg.RestartGrace)
	dur("release_give_up", fc.ReleaseGiveUp, &cfg.ReleaseGiveUp)
	if fc.MaxReplicas > 0 {
		m.MaxReplicas = fc.MaxReplicas
	}
	if fc.MaxExtraReplicas > 0 {
		m.MaxExtraReplicas = fc.MaxExtraReplicas
	}
	if fc.StrikesToExclude > 0 {
		m.StrikesToExclude = fc.StrikesToExclude
	}
	m.VerifierTiebreak = fc.VerifierTiebreak
	if fc.VerifierSlots > 0 {
		cfg.VerifierSlots = fc.VerifierSlots
	}
	if fc.BenchmarkKernel != "" {
		cfg.BenchmarkKernel = fc.BenchmarkKernel
	}
	if fc.BenchmarkWork > 0 {
		cfg.BenchmarkWork = fc.BenchmarkWork
	}
	if fc.BenchmarkTasks > 0 {
		cfg.BenchmarkTasks = fc.BenchmarkTasks
	}
	if fc.QueueDepth > 0 {
		cfg.QueueDepth = fc.QueueDepth
	}
	if fc.QueueDepthMin > 0 {
		cfg.QueueDepthMin = fc.QueueDepthMin
	}
	return err
}

func defaultDataDir() string {
	if d := os.Getenv("ASPEN_VERIFIER_DATA"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".aspen-verifier"
	}
	return filepath.Join(home, ".aspen-verifier")
}

func configPath(data string) string { return filepath.Join(data, verifier.ConfigFile) }

func readFileConfig(data string) (fileConfig, error) {
	fc := defaultFileConfig()
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

// validateAddrs checks listen multiaddrs and the API address.
func validateAddrs(listen []string, api string) error {
	for _, l := range listen {
		if _, err := ma.NewMultiaddr(l); err != nil {
			return fmt.Errorf("--listen %q: %w", l, err)
		}
	}
	if api != "" && api != "off" {
		host, _, err := net.SplitHostPort(api)
		if err != nil {
			return fmt.Errorf("--api %q: want HOST:PORT, e.g. 127.0.0.1:7340: %w", api, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("--api %q: the operator API listens on a loopback address only, e.g. 127.0.0.1:7340", api)
		}
	}
	return nil
}

func initCommand() *cobra.Command {
	var data, api string
	var listen []string
	var fc fileConfig
	cmd := &cobra.Command{
		Use:   "init",
		Short: "create a data directory: identity key, operator token, config",
		Long: `Creates the verifier's data directory (--data) with its identity key, operator
API token and verifier.json (every setting of the verifier, with its default;
edit it to change them). The settings are checked here.`,
		Args: cli.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			var err error
			if fc, err = readFileConfig(data); err != nil {
				return err
			}
			if len(listen) > 0 {
				fc.Listen = listen
			}
			if api != "" {
				fc.API = api
			}
			if err := validateAddrs(fc.Listen, fc.API); err != nil {
				return cli.UsageError{Err: err}
			}
			cfg := verifier.DefaultConfig()
			if err := fc.apply(&cfg); err != nil {
				return cli.UsageError{Err: err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			stdout := cmd.OutOrStdout()
			if err := os.MkdirAll(data, 0o700); err != nil {
				return err
			}
			key, err := p2p.LoadOrCreateKey(filepath.Join(data, verifier.KeyFile))
			if err != nil {
				return err
			}
			if _, err := verifier.LoadOrCreateToken(filepath.Join(data, verifier.TokenFile)); err != nil {
				return err
			}
			b, _ := json.MarshalIndent(fc, "", "  ")
			if err := os.WriteFile(configPath(data), append(b, '\n'), 0o600); err != nil {
				return err
			}
			id, _ := peer.IDFromPrivateKey(key)
			fmt.Fprintf(stdout, "initialized %s\npeer ID: %s\nconfig:  %s\ntoken:   %s\n", data, id,
				configPath(data), filepath.Join(data, verifier.TokenFile))
			fmt.Fprintln(stdout, "next: aspen-verifier start --data "+data+"  (nodes pin this peer ID with --verifier)")
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&data, "data", defaultDataDir(), "data directory (env ASPEN_VERIFIER_DATA)")
	fs.StringArrayVar(&listen, "listen", nil, "libp2p listen multiaddr (repeatable)")
	fs.StringVar(&api, "api", "", "operator API listen address, 127.0.0.1:PORT")
	return cmd
}

func startCommand() *cobra.Command {
	var data, api, logFormat, logLevel string
	var listen []string
	var cfg verifier.Config
	cmd := &cobra.Command{
		Use:   "start",
		Short: "run the verifier",
		Long: `Runs the verifier from its data directory's verifier.json (see
'aspen-verifier init'), with flags overriding it, until Ctrl-C or SIGTERM. It
prints its peer ID, the multiaddrs nodes pin with --verifier and a dashboard
link.`,
		Args: cli.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return cli.UsageError{Err: err}
			}
			fc, err := readFileConfig(data)
			if err != nil {
				return err
			}
			if len(listen) > 0 {
				fc.Listen = listen
			}
			switch api {
			case "":
			case "off":
				fc.API = ""
			default:
				fc.API = api
			}
			if err := validateAddrs(fc.Listen, fc.API); err != nil {
				return cli.UsageError{Err: err}
			}
			cfg = verifier.DefaultConfig()
			cfg.DataDir = data
			cfg.Logger = log
			if err := fc.apply(&cfg); err != nil {
				return cli.UsageError{Err: err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stdout := cmd.Context(), cmd.OutOrStdout()
			v, err := verifier.New(cfg)
			if err != nil {
				return err
			}
			if err := v.Start(ctx); err != nil {
				v.Close()
				return err
			}
			fmt.Fprintf(stdout, "aspen-verifier %s\n", v.ID())
			for _, a := range v.Addrs() {
				fmt.Fprintf(stdout, "  listening on %s/p2p/%s\n", a, v.ID())
			}
			if v.APIAddr() != "" {
				fmt.Fprintf(stdout, "  operator API on http://%s (token in %s)\n", v.APIAddr(), filepath.Join(data, verifier.TokenFile))
				fmt.Fprintf(stdout, "  dashboard: http://%s/#token=%s\n", v.APIAddr(), v.Token())
			}
			<-ctx.Done()
			fmt.Fprintln(stdout, "shutting down")
			return v.Close()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&data, "data", defaultDataDir(), "data directory (env ASPEN_VERIFIER_DATA)")
	fs.StringArrayVar(&listen, "listen", nil, "libp2p listen multiaddr (repeatable)")
	fs.StringVar(&api, "api", "", "operator API listen address, 127.0.0.1:PORT (\"off\" disables it)")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}
