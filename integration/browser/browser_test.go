// Package browser drives the node's web dashboard in headless Chromium
// (through the Chrome DevTools protocol) against real nodes. The tests skip
// when no Chromium is installed; packaging/ci-install-chromium.sh installs
// it on CI. Screenshots go to t.TempDir(), or to $ASPEN_SCREENSHOTS when set.
package browser

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromium finds a Chromium binary ($ASPEN_CHROMIUM, then the usual names)
// or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ASPEN_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (packaging/ci-install-chromium.sh installs it)")
	return ""
}

// browser starts a headless Chromium for the test and returns a tab's
// context. Everything is torn down at the end of the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := chromium(t)
	// Not t.TempDir: Chromium's helpers may still write to the profile
	// for a moment after the browser exits.
	profile, err := os.MkdirTemp("", "aspen-browser-test-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	var (
		logMu sync.Mutex
		logs  []string
	)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(func(f string, a ...any) {
		logMu.Lock()
		logs = append(logs, fmt.Sprintf(f, a...))
		logMu.Unlock()
	}))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		for i := 0; i < 20 && os.RemoveAll(profile) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		logMu.Lock()
		defer logMu.Unlock()
		if t.Failed() && len(logs) > 0 {
			t.Logf("chromium log:\n%s", strings.Join(logs, "\n"))
		}
	})
	// The first Run starts the browser; its context must not be one with a
	// timeout (cancelling it would close the browser).
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting chromium %s: %v", exe, err)
	}
	return ctx
}

// run runs actions with a timeout.
func run(t *testing.T, ctx context.Context, d time.Duration, actions ...chromedp.Action) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Run(tctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) into out.
func eval(t *testing.T, ctx context.Context, expr string, out any) {
	t.Helper()
	run(t, ctx, 30*time.Second, chromedp.Evaluate(expr, out, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	}))
}

// waitFor polls a boolean JavaScript expression until it holds; on timeout
// it fails with describe's value (a JavaScript expression giving context).
func waitFor(t *testing.T, ctx context.Context, what, expr, describe string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var ok bool
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := chromedp.Run(tctx, chromedp.Evaluate("!!("+expr+")", &ok))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var state string
			if describe != "" {
				tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_ = chromedp.Run(tctx, chromedp.Evaluate(describe, &state))
				cancel()
			}
			t.Fatalf("timed out after %s waiting for %s (err %v); page: %s", limit, what, err, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// screenshot saves a full-page PNG.
func screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	dir := os.Getenv("ASPEN_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf []byte
	run(t, ctx, 30*time.Second, chromedp.FullScreenshot(&buf, 100))
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", p, len(buf))
	return p
}

// status GETs url with an optional token and returns the status code.
func status(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// pageText is a describe expression: the visible view and body text.
const pageText = `document.body.dataset.state + " " + document.body.dataset.view + ": " + document.body.innerText.slice(0, 1500)`
