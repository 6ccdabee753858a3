package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCLITable covers every subcommand's usage mistakes (exit 2, one
// error line naming the command and pointing to its help), failures
// (exit 1) and the help, version and completion commands (exit 0).
func TestCLITable(t *testing.T) {
	t.Setenv("ASPEN_VERIFIER_API", "")
	t.Setenv("ASPEN_VERIFIER_TOKEN", "")
	t.Setenv("ASPEN_VERIFIER_DATA", t.TempDir())
	const p = "12D3KooWFrubCmmBN2fbA1g4pmULSa4K3p96rmrwdsJZJjBRmU39"
	noAPI := "no operator API address"
	type row struct {
		args    []string
		mistake string
		message string
		code    int
	}
	cases := []row{
		{nil, "no command", "aspen-verifier: missing command", 2},
		{[]string{"banana"}, "unknown command", `unknown command "banana" for "aspen-verifier"`, 2},
		{[]string{"credt"}, "mistyped command", "did you mean credit?", 2},
		{[]string{"help", "credit"}, "help for a command", "aspen-verifier credit PEER AMOUNT", 0},
		{[]string{"help", "banana"}, "help for no command", `unknown help topic "banana"`, 2},
		{[]string{"version"}, "version", "aspen-verifier ", 0},
		{[]string{"version", "-o", "yaml"}, "version as YAML", "go: go1.", 0},
		{[]string{"completion", "bash"}, "bash completion", "bash completion", 0},
		{[]string{"completion", "fish"}, "fish completion", "fish completion", 0},

		{[]string{"init", "--listen", "tcp:7400"}, "listen not a multiaddr", `--listen "tcp:7400"`, 2},
		{[]string{"init", "--api", "7400"}, "API address without host", `--api "7400": want HOST:PORT`, 2},
		{[]string{"init", "now"}, "argument", `unexpected argument "now"`, 2},
		{[]string{"start", "--log-format", "xml"}, "bad log format", `log format "xml"`, 2},
		{[]string{"start", "--log-level", "loud"}, "bad log level", `log level "loud"`, 2},
		{[]string{"start", "--api", "nope"}, "bad API address", `--api "nope"`, 2},
		{[]string{"init", "--api", "0.0.0.0:7340"}, "API on every interface", "loopback address only", 2},
		{[]string{"start", "--lisen", "/ip4/127.0.0.1/tcp/0"}, "mistyped flag", "did you mean --listen?", 2},

		{[]string{"credit"}, "nothing to credit", "missing PEER AMOUNT", 2},
		{[]string{"credit", p}, "no amount", "missing PEER AMOUNT", 2},
		{[]string{"credit", "bob", "10"}, "not a peer ID", `"bob" is not a peer ID`, 2},
		{[]string{"credit", p, "ten"}, "amount not a number", `amount "ten": want a positive decimal amount`, 2},
		{[]string{"credit", p, "0"}, "zero amount", `amount "0"`, 2},
		{[]string{"credit", p, "-3"}, "negative amount", "unknown shorthand flag", 2},
		{[]string{"credit", p, "10", "extra"}, "third argument", `unexpected argument "extra"`, 2},
		{[]string{"credit", p, "10"}, "no verifier", noAPI, 1},
		{[]string{"accounts", "all"}, "argument", `unexpected argument "all"`, 2},
		{[]string{"accounts", "--output", "csv"}, "unknown output", `--output "csv": want text, json or yaml`, 2},
		{[]string{"accounts"}, "no verifier", noAPI, 1},
		{[]string{"ledger", "--limit", "0"}, "zero page", "--limit 0: want 1 to 10000", 2},
		{[]string{"ledger", p}, "peer as argument", `unexpected argument`, 2},
		{[]string{"ledger", "--acount", p}, "mistyped flag", "did you mean --account?", 2},
		{[]string{"ledger"}, "no verifier", noAPI, 1},
		{[]string{"payouts", "--threshold", "lots"}, "bad threshold", `--threshold "lots"`, 2},
		{[]string{"payouts", "now"}, "argument", `unexpected argument "now"`, 2},
		{[]string{"payouts"}, "no verifier", noAPI, 1},
		{[]string{"workers", "all"}, "argument", `unexpected argument "all"`, 2},
		{[]string{"workers"}, "no verifier", noAPI, 1},
		{[]string{"groups", "a", "b"}, "two IDs", `unexpected argument "b"`, 2},
		{[]string{"groups", "--output", "csv"}, "unknown output", `--output "csv"`, 2},
		{[]string{"groups", "0123", "--all", "-o", "json"}, "flags after the ID (no verifier)", noAPI, 1},
	}
	for _, c := range newRoot().Commands() {
		cases = append(cases, row{[]string{c.Name(), "-h"}, "help flag", "Usage:", 0})
	}
	covered := map[string]bool{}
	for _, c := range cases {
		name := strings.Join(c.args, " ")
		if len(c.args) > 0 {
			covered[c.args[0]] = true
		}
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.message) {
			t.Errorf("aspen-verifier %s (%s): exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", name, c.mistake, code, c.code, c.message, out.String(), errb.String())
			continue
		}
		if c.code == 2 && !strings.Contains(errb.String(), "Run 'aspen-verifier") {
			t.Errorf("aspen-verifier %s: usage error without a pointer to help:\n%s", name, errb.String())
		}
		if c.code == 1 && strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("aspen-verifier %s: want one error line, got:\n%s", name, errb.String())
		}
	}
	for _, c := range newRoot().Commands() {
		if !covered[c.Name()] {
			t.Errorf("subcommand %s has no row in the CLI table", c.Name())
		}
	}
}
