package ledger

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

const (
	crashConsumers = 4
	crashWriters   = 16
)

// crashSeed is the credit that funds consumer c in TestKill9.
func crashSeed(c int) Posting {
	return CreditPosting(fmt.Sprintf("seed-%d", c), 1, fmt.Sprintf("c%d", c), 1_000_000_000)
}

// crashTask is the escrow and settlement of task i of writer g: a pure
// function of (g, i), so the parent can rebuild what the child posted.
func crashTask(g, i int) []Posting {
	c := fmt.Sprintf("c%d", g%crashConsumers)
	id := fmt.Sprintf("g%d/%d", g, i)
	e := protocol.Micros(1000 + (g*7919+i*104729)%5000)
	return []Posting{
		escrowPosting(id, c, e),
		settlePosting(id, c, e, map[string]protocol.Micros{fmt.Sprintf("w%d", i%5): e / 2}, e/10),
	}
}

// parseTaskID recovers (g, i) from "escrow/g<g>/<i>" or "settle/g<g>/<i>".
func parseTaskID(id string) (g, i int, ok bool) {
	_, rest, _ := strings.Cut(id, "/")
	n, err := fmt.Sscanf(rest, "g%d/%d", &g, &i)
	return g, i, err == nil && n == 2
}

// crashChild posts settlements as fast as it can, printing each
// acknowledged posting ID, until it is killed.
func crashChild(dir string) int {
	cfg := store.DefaultConfig()
	cfg.Dir = dir
	st, err := store.Open(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	l, err := Open(st, Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	var outMu sync.Mutex
	ack := func(ids ...string) {
		outMu.Lock()
		defer outMu.Unlock()
		var b strings.Builder
		for _, id := range ids {
			b.WriteString("ack " + id + "\n")
		}
		_, _ = os.Stdout.WriteString(b.String())
	}
	ctx := context.Background()
	for c := range crashConsumers {
		p := crashSeed(c)
		if _, err := l.Post(ctx, p); err != nil {
			fmt.Fprintln(os.Stderr, "child seed:", err)
			return 2
		}
		ack(p.ID)
	}
	var wg sync.WaitGroup
	for g := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				ps := crashTask(g, i)
				if i%2 == 0 {
					if err := l.PostBatch(ctx, ps); err != nil {
						fmt.Fprintln(os.Stderr, "child batch:", err)
						return
					}
					ack(ps[0].ID, ps[1].ID)
					continue
				}
				for _, p := range ps {
					if _, err := l.Post(ctx, p); err != nil {
						fmt.Fprintln(os.Stderr, "child post:", err)
						return
					}
					ack(p.ID)
				}
			}
		}()
	}
	wg.Wait()
	return 1
}

func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			t.Errorf("unexpected child output %q", sc.Text())
			continue
		}
		acked = append(acked, id)
		if !killed && len(acked) >= 1000 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	werr := cmd.Wait()
	if !killed {
		t.Fatalf("child ended before the kill: %v\n%s", werr, stderr.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\n%s", werr, stderr.String())
	}
	t.Logf("child acknowledged %d postings before SIGKILL", len(acked))

	st := openStore(t, dir, nil)
	defer st.Close()
	l, err := Open(st, Config{})
	if err != nil {
		t.Fatal(err)
	}
	replay := map[string]Posting{}
	for c := range crashConsumers {
		p := crashSeed(c)
		replay[p.ID] = p
	}
	for _, id := range acked {
		if _, err := l.Lookup(id); err != nil {
			t.Errorf("acknowledged posting %s lost: %v", id, err)
		}
		if g, i, ok := parseTaskID(id); ok {
			for _, p := range crashTask(g, i) {
				if p.ID == id {
					replay[id] = p
				}
			}
		}
	}
	if len(replay) != len(acked) {
		t.Fatalf("rebuilt %d of %d acknowledged postings", len(replay), len(acked))
	}
	if err := l.Check(); err != nil {
		t.Fatalf("after kill -9: %v", err)
	}
	before, err := l.Balances()
	if err != nil {
		t.Fatal(err)
	}
	js, _ := l.Journal(JournalFilter{})
	// Replaying every acknowledged posting (as a restarted verifier would)
	// changes nothing.
	for _, p := range replay {
		if applied, err := l.Post(context.Background(), p); err != nil || applied {
			t.Fatalf("replay of %s: applied=%v err=%v", p.ID, applied, err)
		}
	}
	after, _ := l.Balances()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("replay changed balances:\n%v\n%v", before, after)
	}
	js2, _ := l.Journal(JournalFilter{})
	if len(js2) != len(js) {
		t.Fatalf("replay grew the journal from %d to %d", len(js), len(js2))
	}
	if tot, err := l.Total(); err != nil || tot != 0 {
		t.Fatalf("Total = %s %v", tot, err)
	}
}
