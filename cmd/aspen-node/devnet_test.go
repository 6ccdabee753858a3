package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/client"
)

// TestDevnet runs the README's first command end to end: a verifier, three
// workers and a consumer in this process on loopback, an example map job,
// verified results and a balanced ledger. With --keep it then runs, in
// this process, the map command devnet prints, in the environment of the
// devnet.env file it prints: both must work as printed.
func TestDevnet(t *testing.T) {
	if testing.Short() {
		t.Skip("devnet end to end")
	}
	if raceEnabled {
		t.Skip("runs without -race in make check's e2e pass (wazero compiles 10x slower under the race detector)")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	var errb bytes.Buffer
	exit := make(chan int, 1)
	go func() {
		code := cmdDevnet(ctx, []string{"--dir", dir, "--tasks", "4", "--example", "primes", "--keep"}, nil, pw, &errb)
		pw.Close()
		exit <- code
	}()
	// Read up to the printed command; then keep draining.
	var out strings.Builder
	sc := bufio.NewScanner(pr)
	var envLine, hint string
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if envLine != "" {
			hint = strings.TrimSpace(line)
			break
		}
		if strings.HasPrefix(line, "  . ") {
			envLine = strings.TrimPrefix(line, "  . ")
		}
	}
	if hint == "" {
		cancel()
		t.Fatalf("devnet printed no command to try (exit %d)\nstdout:\n%s\nstderr:\n%s", <-exit, out.String(), errb.String())
	}
	rest := make(chan string, 1)
	go func() { b, _ := io.ReadAll(pr); rest <- string(b) }()
	got := out.String()
	for _, want := range []string{
		"3 workers benchmarked and rated",
		"all 4 results verified",
		"664579", // primes below 10,000,000
		"ledger balanced",
		"  verifier  http://127.0.0.1:",
		"  worker-3  http://127.0.0.1:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("devnet output lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "verified 2/2") != 4 {
		t.Errorf("want 4 tasks verified by 2 agreeing replicas:\n%s", got)
	}

	// '. devnet.env': every line an export the shell and FromEnv see.
	env, err := os.ReadFile(envLine)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(env)), "\n") {
		kv, ok := strings.CutPrefix(l, "export ")
		k, v, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 || len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
			t.Fatalf("devnet.env line %q: want export KEY='VALUE'", l)
		}
		keys[k] = true
		t.Setenv(k, v[1:len(v)-1])
	}
	for _, k := range []string{"ASPEN_API", "ASPEN_TOKEN", "ASPEN_VERIFIER_API", "ASPEN_VERIFIER_TOKEN", "ASPEN_VERIFIER"} {
		if !keys[k] {
			t.Errorf("devnet.env lacks %s", k)
		}
	}
	t.Setenv("ASPEN_DATA", t.TempDir()) // nothing found there: the environment must do

	// The printed command, run as printed (quotes removed as a shell would).
	prog, args, ok := strings.Cut(hint, " map ")
	if !ok || prog != "go run ./cmd/aspen-node" {
		t.Fatalf("printed command %q: want 'go run ./cmd/aspen-node map ...' from a go-built test binary", hint)
	}
	var argv []string
	for _, a := range strings.Fields(args) {
		argv = append(argv, strings.Trim(a, "'"))
	}
	code, stdout, stderr := runCmd(ctx, cmdMap, argv, "")
	if code != 0 {
		t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", hint, code, stdout, stderr)
	}
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 4 || lines[0] != "664579" {
		t.Errorf("%s: stdout %q, want 4 results, the first 664579", hint, stdout)
	}

	// --dry-run spends nothing and says what the map would hold and cost.
	c, err := client.FromEnv("")
	if err != nil {
		t.Fatal(err)
	}
	before, err := c.Groups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCmd(ctx, cmdMap, append(argv, "--dry-run"), "")
	if code != 0 {
		t.Fatalf("--dry-run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"dry run: nothing was submitted",
		// 2 replicas × (20/h × 10 min of standard work at the default min
		// speed 0.1, rounded up, + 1 µ for carries).
		"escrow per task:  66.66667 (2 replicas × 20.00/h × 10m of standard work",
		"at most:          266.66668",
		"min speed 0.1 (the node's default)",
		"sample:           input 0 ran on this machine in ",
		"the prices of the 3 offers seen that accept these terms",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--dry-run output lacks %q:\n%s", want, stdout)
		}
	}
	if after, err := c.Groups(ctx); err != nil || len(after) != len(before) {
		t.Errorf("--dry-run submitted a group: %d groups before, %d after (%v)", len(before), len(after), err)
	}

	// --detach prints the group's ID; results --wait --output json follows it.
	code, stdout, stderr = runCmd(ctx, cmdMap, append(argv, "--detach"), "")
	id := strings.TrimSpace(stdout)
	if code != 0 || len(id) != 32 {
		t.Fatalf("--detach: exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCmd(ctx, cmdResults, []string{id, "--wait", "--output", "json"}, "")
	var recs []inputRecord
	if err := json.Unmarshal([]byte(stdout), &recs); code != 0 || err != nil || len(recs) != 4 || recs[0].Status != "verified" || recs[0].Stdout != "664579\n" {
		t.Fatalf("results %s --wait --output json: exit %d, %v\n%s\n%s", id, code, err, stdout, stderr)
	}

	cancel()
	if code := <-exit; code != 0 {
		t.Errorf("devnet exit %d after Ctrl-C\n%s\n%s", code, <-rest, errb.String())
	}
	<-rest
	if _, err := os.Stat(filepath.Join(dir, "devnet.env")); err != nil {
		t.Errorf("--dir: %v", err)
	}
}
