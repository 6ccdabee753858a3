package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/aspen-market/aspen/internal/cli"
	"github.com/aspen-market/aspen/node"
)

// doctorCommand is 'aspen-node doctor': the checks are node.Doctor's.
func doctorCommand() *cobra.Command {
	var f nodeFlags
	var wait time.Duration
	var out cli.Output
	var cfg node.Config
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "check the data directory, the verifier connection, the clock and reachability",
		Long: `Checks what the node needs from this machine and its network, each with
what to do when it fails: the data directory (exists, writable, free space),
the connection to the pinned verifier, the clock against the verifier's,
and reachability: public, behind NAT but reachable through a relay, or
unreachable. When the node is running (its local API answers) its own
reachability is reported; otherwise a probe with the node's identity finds
it (up to --wait). Exits 1 when a check fails.`,
		Example: `  aspen-node doctor
  aspen-node doctor --data /var/lib/aspen --output json`,
		Args: cli.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.Validate(); err != nil {
				return err
			}
			fc, err := readFileConfig(f.data)
			if err != nil {
				return err
			}
			f.merge(&fc)
			if err := validateFileConfig(fc, true); err != nil {
				return cli.UsageError{Err: err}
			}
			if cfg, err = buildNodeConfig(fc, f.data, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
				return cli.UsageError{Err: err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			checks := node.Doctor(cmd.Context(), cfg, wait)
			err := out.Write(cmd.OutOrStdout(), checks, func() error {
				for _, c := range checks {
					mark := "ok  "
					if !c.OK {
						mark = "FAIL"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "[%s] %s: %s\n", mark, c.Name, c.Detail)
					if c.Fix != "" {
						fmt.Fprintf(cmd.OutOrStdout(), "       what to do: %s\n", c.Fix)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if node.Failed(checks) {
				return cli.Exit(1)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.data, "data", defaultDataDir(), "data directory (env ASPEN_DATA)")
	fs.StringVar(&f.verifier, "verifier", os.Getenv("ASPEN_VERIFIER"), "the verifier's multiaddr with /p2p/ID (default: config.json's; env ASPEN_VERIFIER)")
	fs.StringArrayVar(&f.listen, "listen", nil, "libp2p listen multiaddr of the probe (default: config.json's)")
	fs.StringArrayVar(&f.relays, "relay", nil, "an operator's relay, multiaddr with /p2p/ID (default: config.json's)")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long a probe waits for AutoNAT's verdict when the node is not running")
	out.Register(cmd)
	return cmd
}
