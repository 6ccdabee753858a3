package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// cliCase is one row of the CLI table: a command line, the mistake it
// makes (or what it shows), what it must say and its exit status.
type cliCase struct {
	args    []string
	mistake string
	message string // in stdout or stderr
	code    int
}

// TestCLITable covers every subcommand's usage mistakes (exit 2, one
// error line naming the command and pointing to its help), failures
// (exit 1) and the help, version and completion commands (exit 0).
func TestCLITable(t *testing.T) {
	for _, k := range []string{"ASPEN_API", "ASPEN_TOKEN", "ASPEN_VERIFIER", "ASPEN_ROLE", "ASPEN_MIN_PRICE", "ASPEN_MAX_PRICE", "ASPEN_MIN_SPEED", "ASPEN_API_LISTEN", "ASPEN_OWNER"} {
		t.Setenv(k, "")
	}
	dir := t.TempDir()
	t.Setenv("ASPEN_DATA", filepath.Join(dir, "data"))
	mod := writeFile(t, dir, "m.wasm", "\x00asm\x01\x00\x00\x00")
	in := writeFile(t, dir, "in.txt", "1 100\n")
	const vaddr = "/ip4/127.0.0.1/tcp/7400/p2p/12D3KooWFrubCmmBN2fbA1g4pmULSa4K3p96rmrwdsJZJjBRmU39"
	noNode := "is the node running?"
	cases := []cliCase{
		{nil, "no command", "aspen-node: missing command", 2},
		{[]string{"banana"}, "unknown command", `unknown command "banana" for "aspen-node"`, 2},
		{[]string{"mpa"}, "mistyped command", `did you mean map?`, 2},
		{[]string{"help", "map"}, "help for a command", "aspen-node map MODULE.wasm", 0},
		{[]string{"help", "banana"}, "help for no command", `unknown help topic "banana"`, 2},
		{[]string{"--help"}, "top-level help", "Available Commands:", 0},
		{[]string{"version"}, "version", "aspen-node ", 0},
		{[]string{"version", "--output", "json"}, "version as JSON", `"go": "go1.`, 0},
		{[]string{"version", "extra"}, "argument to version", `unexpected argument "extra"`, 2},
		{[]string{"completion", "bash"}, "bash completion", "bash completion", 0},
		{[]string{"completion", "zsh"}, "zsh completion", "zsh completion", 0},
		{[]string{"completion", "fish"}, "fish completion", "fish completion", 0},

		{[]string{"init", "--role", "banana"}, "unknown role", `aspen-node init: --role "banana": want worker, consumer or both`, 2},
		{[]string{"init", "--min-price", "abc"}, "price not a number", `--min-price "abc": want a decimal amount`, 2},
		{[]string{"init", "--verifier", "/ip4/1.2.3.4/tcp/7400"}, "verifier without peer ID", "must end in /p2p/ID", 2},
		{[]string{"init", "--verifier", "nonsense"}, "verifier not an address", "verifier peer ID", 2},
		{[]string{"init", "--max-memory", "lots"}, "bad size", `--max-memory: bad size "lots"`, 2},
		{[]string{"init", "--listen", "tcp:7000"}, "listen not a multiaddr", `--listen "tcp:7000"`, 2},
		{[]string{"init", "--bootstrap", "/ip4/1.2.3.4/tcp/1"}, "bootstrap without peer ID", `--bootstrap "/ip4/1.2.3.4/tcp/1"`, 2},
		{[]string{"init", "--api", "7341"}, "API address without host", `--api "7341": want HOST:PORT`, 2},
		{[]string{"init", "--slots", "-1"}, "negative slots", "--slots -1", 2},
		{[]string{"init", "--rol", "worker"}, "mistyped flag", "unknown flag: --rol; did you mean --role?", 2},
		{[]string{"init", "worker"}, "argument instead of flag", `unexpected argument "worker"`, 2},
		{[]string{"start", "--log-level", "loud"}, "bad log level", `log level "loud"`, 2},
		{[]string{"start", "--log-format", "xml"}, "bad log format", `log format "xml"`, 2},
		{[]string{"start", "--role", "consumer"}, "no verifier", "no verifier configured", 2},
		{[]string{"start", "--verifier", vaddr, "--role", "banana"}, "unknown role", `--role "banana"`, 2},
		{[]string{"start", "now"}, "argument", `unexpected argument "now"`, 2},
		{[]string{"init", "--relay", "/ip4/1.2.3.4/tcp/1"}, "relay without peer ID", `--relay "/ip4/1.2.3.4/tcp/1": want an address ending in /p2p/ID`, 2},
		{[]string{"doctor", "now"}, "argument", `unexpected argument "now"`, 2},
		{[]string{"doctor", "--output", "csv"}, "unknown output", `--output "csv"`, 2},
		{[]string{"doctor"}, "no verifier", "no verifier configured", 2},
		{[]string{"doctor", "--verifier", vaddr}, "no data directory", "what to do: run 'aspen-node init", 1},

		{[]string{"devnet", "--workers", "1"}, "one worker", "at least 2 workers", 2},
		{[]string{"devnet", "--example", "fibonacci"}, "unknown example", `--example "fibonacci": want one of`, 2},
		{[]string{"devnet", "--credit", "lots"}, "bad credit", `--credit "lots"`, 2},
		{[]string{"devnet", "--max-price", "0"}, "zero price", `--max-price "0"`, 2},
		{[]string{"devnet", "--spot-check", "2"}, "spot-check rate above 1", "--spot-check 2", 2},
		{[]string{"devnet", "--tasks", "0"}, "no tasks", "--tasks 0", 2},
		{[]string{"devnet", "primes"}, "argument", `unexpected argument "primes"`, 2},

		{[]string{"map"}, "no module", "aspen-node map: missing MODULE.wasm", 2},
		{[]string{"map", mod, in}, "no price", "--max-price is required", 2},
		{[]string{"map", mod, in, "--max-price", "abc"}, "price not a number", `--max-price "abc"`, 2},
		{[]string{"map", mod, "--max-price", "1"}, "no inputs", "exactly one of them", 2},
		{[]string{"map", mod, in, "--lines", in, "--max-price", "1"}, "two input sources", "exactly one of them", 2},
		{[]string{"map", mod, in, "--max-price", "1", "--replicas", "1"}, "one replica", "--replicas must be 2 to 16", 2},
		{[]string{"map", mod, in, "--max-price", "1", "--timeout", "0s"}, "zero timeout", "--timeout must be more than 0", 2},
		{[]string{"map", mod, in, "--max-price", "1", "--min-speed", "fast"}, "speed not a number", `--min-speed "fast"`, 2},
		{[]string{"map", mod, in, "--max-price", "1", "--output", "xml"}, "unknown output", `--output "xml": want text, json or yaml`, 2},
		{[]string{"map", mod, in, "--max-price", "1", "--output", "json", "--out", dir}, "two outputs", "choose one", 2},
		{[]string{"map", mod, in, "--max-price", "1", "--detach", "--dry-run"}, "detach and dry run", "choose one", 2},
		{[]string{"map", mod, in, "--max-prise", "1"}, "mistyped flag", "did you mean --max-price?", 2},
		{[]string{"map", mod, in, "--max-price", "1"}, "no node", noNode, 1},
		{[]string{"map", "--max-price", "1", filepath.Join(dir, "absent.wasm"), in}, "module missing (flags first)", "no such file", 1},

		{[]string{"groups", "a", "b"}, "two IDs", `unexpected argument "b"`, 2},
		{[]string{"groups", "--cancel"}, "cancel without ID", "--cancel needs the group's ID", 2},
		{[]string{"groups", "--output", "csv"}, "unknown output", `--output "csv"`, 2},
		{[]string{"groups"}, "no node", noNode, 1},
		{[]string{"groups", "0123", "--output", "json"}, "flags after the ID (no node)", noNode, 1},
		{[]string{"results"}, "no ID", "missing the group's ID", 2},
		{[]string{"results", "a", "b"}, "two IDs", `unexpected argument "b"`, 2},
		{[]string{"results", "a", "--output", "json", "--out", dir}, "two outputs", "choose one", 2},
		{[]string{"results", "a"}, "no node", noNode, 1},
		{[]string{"balance", "now"}, "argument", `unexpected argument "now"`, 2},
		{[]string{"balance", "--output", "csv"}, "unknown output", `--output "csv"`, 2},
		{[]string{"balance"}, "no node", noNode, 1},

		{[]string{"exec"}, "no module", "missing one MODULE.wasm", 2},
		{[]string{"exec", mod, mod}, "two modules", "unexpected argument", 2},
		{[]string{"exec", mod, "--max-memory", "lots"}, "bad size", "--max-memory", 2},
		{[]string{"exec", mod, "--timeout", "0s"}, "zero timeout", "--timeout must be positive", 2},
		{[]string{"exec", mod, "--work-budget", "0"}, "zero work budget", "--work-budget must be between 1 and", 2},
		{[]string{"exec", mod, "--output", "xml"}, "unknown output", `--output "xml"`, 2},
		{[]string{"exec", filepath.Join(dir, "absent.wasm")}, "module missing", "no such file", 1},
	}
	// -h on every command: its help, exit 0.
	for _, c := range newRoot().Commands() {
		cases = append(cases, cliCase{[]string{c.Name(), "-h"}, "help flag", "Usage:", 0})
	}
	covered := map[string]bool{}
	for _, c := range cases {
		name := strings.Join(c.args, " ")
		if len(c.args) > 0 {
			covered[c.args[0]] = true
		}
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, strings.NewReader(""), &out, &errb)
		both := out.String() + errb.String()
		if code != c.code || !strings.Contains(both, c.message) {
			t.Errorf("aspen-node %s (%s): exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", name, c.mistake, code, c.code, c.message, out.String(), errb.String())
			continue
		}
		if c.code == 2 {
			if lines := strings.Split(strings.TrimSpace(errb.String()), "\n"); !strings.HasPrefix(lines[len(lines)-1], "Run 'aspen-node") {
				t.Errorf("aspen-node %s: usage error without a pointer to help:\n%s", name, errb.String())
			}
		}
		if c.code == 1 && strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("aspen-node %s: want one error line, got:\n%s", name, errb.String())
		}
		if strings.Contains(both, "client: ") || strings.Contains(both, "/v1/") {
			t.Errorf("aspen-node %s: API internals in the message:\n%s", name, both)
		}
	}
	for _, c := range newRoot().Commands() {
		if !covered[c.Name()] {
			t.Errorf("subcommand %s has no row in the CLI table", c.Name())
		}
	}
}
