package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// submitViaMap runs a map over inputs so the API double holds a finished
// group, and returns its ID.
func submitViaMap(t *testing.T, d *apiDouble, inputs string) string {
	t.Helper()
	mod := writeFile(t, t.TempDir(), "m.wasm", "\x00asm")
	if code, _, errs := runCmd(context.Background(), cmdMap, d.args(mod, "--inputs", "-", "--max-price", "0.04", "--name", "demo", "--quiet"), inputs); code > 1 {
		t.Fatalf("map: exit %d: %s", code, errs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.groups[len(d.groups)-1].g.ID
}

func TestGroupsCommand(t *testing.T) {
	d := newAPIDouble(t)
	code, out, _ := runCmd(context.Background(), cmdGroups, d.args(), "")
	if code != 0 || !strings.Contains(out, "no job groups") {
		t.Fatalf("empty list: exit %d, %q", code, out)
	}
	id := submitViaMap(t, d, "\"a\"\n\"exit:4\"\n\"nowork\"\n")

	code, out, errs := runCmd(context.Background(), cmdGroups, d.args(), "")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "SPENT") {
		t.Fatalf("list:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[0] != id || f[1] != "demo" || f[2] != "finished" || !strings.Contains(lines[1], " 3/3 ") || !strings.Contains(lines[1], " 0.00002 ") {
		t.Errorf("group line %q", lines[1])
	}

	code, out, errs = runCmd(context.Background(), cmdGroups, d.args(id), "")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"group " + id + ` "demo": finished with failures, 3/3 finished (2 verified, 1 failed, 0 canceled), spent 0.00002`,
		"INDEX  STATE     JOB   EXIT  REPLICAS  CHARGED  REASON",
		"0      verified  ok    0     -         0.00001  -",
		"1      verified  exit  4     2         0.00001  -",
		"2      failed    -     -     -         0.00     no eligible workers",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}

	if code, out, _ = runCmd(context.Background(), cmdGroups, d.args(id, "--json"), ""); code != 0 || !strings.Contains(out, `"tasks": [`) {
		t.Errorf("--json: exit %d\n%s", code, out)
	}
	if code, _, errs = runCmd(context.Background(), cmdGroups, d.args("ffffffffffffffffffffffffffffffff"), ""); code != 1 || !strings.Contains(errs, "unknown job group") {
		t.Errorf("unknown group: exit %d, %s", code, errs)
	}
	if code, _, _ = runCmd(context.Background(), cmdGroups, d.args("--cancel"), ""); code != 2 {
		t.Errorf("--cancel without ID: exit %d", code)
	}
}

func TestGroupsCancel(t *testing.T) {
	d := newAPIDouble(t)
	id := submitViaMap(t, d, "\"a\"\n")
	code, out, errs := runCmd(context.Background(), cmdGroups, d.args("--cancel", id), "")
	if code != 0 || !strings.HasPrefix(out, "group "+id+" canceled: ") {
		t.Fatalf("exit %d, %q %s", code, out, errs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancels != 1 {
		t.Fatalf("%d cancels", d.cancels)
	}
}

func TestResultsCommand(t *testing.T) {
	d := newAPIDouble(t)
	id := submitViaMap(t, d, "\"a\"\n\"exit:4\"\n\"c\"\n")
	code, out, errs := runCmd(context.Background(), cmdResults, d.args(id), "")
	if code != 1 || out != "A\nERROR input 1: job exited with status 4: bad input 4\nC\n" {
		t.Fatalf("exit %d, stdout %q\n%s", code, out, errs)
	}
	if !strings.Contains(errs, "input 1: job exited with status 4: bad input 4") || !strings.Contains(errs, "3 inputs: 2 verified, 1 failed") {
		t.Errorf("stderr:\n%s", errs)
	}
	if strings.Contains(errs, "done (") {
		t.Errorf("progress shown for a finished group:\n%s", errs)
	}

	dir := filepath.Join(t.TempDir(), "out")
	if code, _, _ = runCmd(context.Background(), cmdResults, d.args(id, "--out", dir, "--quiet"), ""); code != 1 {
		t.Fatalf("--out: exit %d", code)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "000002.out")); err != nil || string(b) != "C\n" {
		t.Errorf("000002.out = %q, %v", b, err)
	}

	// A running group: refused without --wait, followed with it.
	d.mu.Lock()
	g := d.groups[0]
	d.groups = append(d.groups, &dGroup{g: g.g, res: append(g.res[:0:0], g.res...)})
	run := d.groups[1]
	run.g.ID, run.g.Done, run.g.State, run.g.Pending, run.g.Verified, run.g.Spent = "00000000000000000000000000000002", false, "running", 3, 0, 0
	d.mu.Unlock()
	if code, _, errs = runCmd(context.Background(), cmdResults, d.args(run.g.ID), ""); code != 1 || !strings.Contains(errs, "still running (1 of 3 finished); use --wait") {
		t.Fatalf("running group: exit %d, %s", code, errs)
	}
	code, out, errs = runCmd(context.Background(), cmdResults, d.args(run.g.ID, "--wait"), "")
	if code != 1 || out != "A\nERROR input 1: job exited with status 4: bad input 4\nC\n" || !strings.Contains(errs, "3/3 done (2 verified, 1 failed)") {
		t.Fatalf("--wait: exit %d, stdout %q\n%s", code, out, errs)
	}
	if code, _, _ = runCmd(context.Background(), cmdResults, d.args(), ""); code != 2 {
		t.Errorf("no ID: exit %d", code)
	}
}
