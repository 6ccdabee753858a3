package verifier

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
)

// childVerifierEnv makes the test binary run a verifier (data directory,
// TCP port and module cache in the variable, "DIR|PORT|CACHE") until it is
// killed.
const childVerifierEnv = "ASPEN_VERIFIER_TEST_CHILD"

func runChildVerifier() {
	parts := strings.SplitN(os.Getenv(childVerifierEnv), "|", 3)
	if len(parts) != 3 {
		fmt.Println("ERROR bad", childVerifierEnv)
		os.Exit(1)
	}
	dir, port := parts[0], parts[1]
	fail := func(err error) {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	cacheDir = parts[2]
	cfg := testConfig(nopTB{}, dir)
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/" + port}
	cfg.RestartGrace = 15 * time.Second
	sb, err := startSandbox(sandbox.Subprocess, 1)
	if err != nil {
		fail(err)
	}
	cfg.Runner = fixedRunner{sb, jobTime}
	v, err := New(cfg)
	if err != nil {
		fail(err)
	}
	if err := v.Start(context.Background()); err != nil {
		fail(err)
	}
	fmt.Println("READY", v.ID())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	<-ch
	os.Exit(0)
}

// nopTB stands in for testing.TB in the child process (logging off).
type nopTB struct{ testing.TB }

func (nopTB) Helper()          {}
func (nopTB) Cleanup(f func()) {}

// remote is a verifier running in another process.
type remote struct{ ai peer.AddrInfo }

func (r remote) AddrInfo() peer.AddrInfo { return r.ai }

func TestKill9MidGroupLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 test")
	}
	dir := t.TempDir()
	port := freePort(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childVerifierEnv+"="+dir+"|"+port+"|"+cacheDir, "VERIFIER_TEST_LOG=")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- id
			} else if strings.HasPrefix(sc.Text(), "ERROR") {
				ready <- sc.Text()
			}
		}
		close(ready)
	}()
	var id peer.ID
	select {
	case s := <-ready:
		if id, err = peer.Decode(s); err != nil {
			t.Fatalf("child verifier: %s", s)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("child verifier did not start")
	}
	addr, _ := ma.NewMultiaddr("/ip4/127.0.0.1/tcp/" + port)
	rv := remote{peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{addr}}}
	sb := workersSandbox
	delay := workerBehaviour{Delay: 150 * time.Millisecond}
	a := startWorker(t, sb, rv, "alice", workerPrice, delay)
	b := startWorker(t, sb, rv, "bob", workerPrice, delay)
	d := startWorker(t, sb, rv, "dave", workerPrice, delay)
	waitFor(t, 60*time.Second, "workers rated", func() bool {
		return a.Rating() != nil && b.Rating() != nil && d.Rating() != nil
	})
	c := startConsumer(t, rv)
	creditRemote(t, dir, c.id, 10*protocol.MicrosPerUnit)
	const n = 12
	gid := submitOK(t, c, defaultGroup(n))
	waitFor(t, 90*time.Second, "some tasks released", func() bool { return len(c.releases(gid)) >= 2 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	before := len(c.releases(gid))
	if before == n {
		t.Fatal("the whole group finished before the kill")
	}
	cfg := testConfig(t, dir)
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/" + port}
	cfg.RestartGrace = 15 * time.Second
	v := startVerifier(t, cfg, false)
	if v.ID() != id {
		t.Fatal("identity changed across the crash")
	}
	checkResumed(t, v, c, gid, n, 10*protocol.MicrosPerUnit, a, b, d)
	t.Logf("%d of %d tasks released before kill -9, %d duplicate releases", before, n, c.dups)
}

// creditRemote credits a consumer through the operator API of the
// verifier whose data directory is dir.
func creditRemote(t testing.TB, dir string, p peer.ID, amount protocol.Micros) {
	t.Helper()
	addr, err := os.ReadFile(filepath.Join(dir, AddrFile))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"peer":%q,"amount":%q}`, p.String(), amount.String())
	req, _ := http.NewRequest("POST", "http://"+strings.TrimSpace(string(addr))+"/v1/credit", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("credit: %s", resp.Status)
	}
}
