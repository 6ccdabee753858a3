package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/aspen-market/aspen/protocol"
)

// crashChild is the child side of TestKill9: it writes durable records,
// plain updates and blobs as fast as it can and prints one line per
// acknowledged write, until it is killed.
func crashChild(dir string) int {
	cfg := DefaultConfig()
	cfg.Dir = dir
	smallChunks(&cfg)
	s, err := Open(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	var outMu sync.Mutex
	ack := func(format string, a ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		// One write per line: the parent reads whole lines from the pipe.
		_, _ = os.Stdout.WriteString(fmt.Sprintf(format, a...) + "\n")
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key := fmt.Sprintf("g%02d-%06d", g, i)
				var err error
				if g%4 == 3 {
					err = s.Update(func(tx *Tx) error { return tx.Put("crash", []byte(key), []byte("v"+key)) })
				} else {
					err = s.Durable(context.Background(), func(tx *Tx) error {
						return tx.Put("crash", []byte(key), []byte("v"+key))
					})
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "child write:", err)
					return
				}
				ack("rec %s", key)
			}
		}()
	}
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				size := 500 + (i*7919+g*104729)%(120<<10)
				data := randBytes(uint64(g<<32|i), size)
				c := protocol.BlobCID(data)
				n, err := s.WriteBlob(context.Background(), c, bytes.NewReader(data), 0)
				if err != nil {
					fmt.Fprintln(os.Stderr, "child blob:", err)
					return
				}
				ack("blob %s %d", c, n)
			}
		}()
	}
	wg.Wait()
	return 1 // only reached on a write error
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
	recs := map[string]bool{}
	blobs := map[string]int64{}
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "rec":
			recs[f[1]] = true
		case len(f) == 3 && f[0] == "blob":
			n, _ := strconv.ParseInt(f[2], 10, 64)
			blobs[f[1]] = n
		default:
			t.Errorf("unexpected child output %q", sc.Text())
		}
		// Kill in the middle of the burst, once enough has been acked.
		if !killed && len(recs) >= 1500 && len(blobs) >= 8 {
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
	t.Logf("child acknowledged %d records and %d blobs before SIGKILL", len(recs), len(blobs))

	s := openTest(t, dir, smallChunks)
	for key := range recs {
		v, err := s.Get("crash", []byte(key))
		if err != nil || string(v) != "v"+key {
			t.Errorf("acknowledged record %s: %q, %v", key, v, err)
		}
	}
	for cs, size := range blobs {
		c, err := protocol.ParseCID(cs)
		if err != nil {
			t.Fatal(err)
		}
		data, err := s.GetBlob(c)
		if err != nil || int64(len(data)) != size {
			t.Errorf("acknowledged blob %s: %d bytes, %v", cs, len(data), err)
		}
	}
	// Uploads cut short by the kill were removed at Open: every chunk
	// left belongs to a live blob.
	if k := countKeys(t, s, kindPending); k != 0 {
		t.Errorf("%d pending markers after reopen", k)
	}
	live := 0
	if err := s.ListBlobs(func(c cid.Cid, size int64) error {
		m, err := s.readMeta(c)
		if err != nil {
			return err
		}
		if m.file {
			live++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if k := countKeys(t, s, kindChunk); k != 0 {
		t.Errorf("%d chunk keys, want none", k)
	}
	if f, k := countFiles(t, s), countKeys(t, s, kindFile); f != live || k != live {
		t.Errorf("%d blob files and %d file keys, %d live blob files", f, k, live)
	}
}
