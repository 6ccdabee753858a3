package browser

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"image/png"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/protocol"
)

// startNode starts a node on loopback with the given role and verifier.
func startNode(t *testing.T, role node.Role, v peer.AddrInfo, name string) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), name)
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIAddr = "127.0.0.1:0"
	cfg.Verifier = v
	cfg.Role = role
	if role.Has(node.RoleWorker) {
		cfg.MinPrice = protocol.Micros(20_000)
		cfg.OfferInterval = 2 * time.Second
		cfg.HeartbeatInterval = 500 * time.Millisecond
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := n.Start(context.Background()); err != nil {
		n.Close()
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// nowhere is a verifier nobody runs: pages load, the statement fails.
func nowhere(t *testing.T) peer.AddrInfo {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return peer.AddrInfo{ID: id}
}

func base(n *node.Node) string { return "http://" + n.APIAddr() }

// TestDashboardLoginAndPages checks the token gate and that every page of
// a consumer and a worker loads, without a verifier: the API refuses
// requests without the token, the page asks for it, a wrong token is
// refused, the one-time link signs in and leaves no token in the address
// bar, only the role's sections are shown, and the layout fits a phone.
func TestDashboardLoginAndPages(t *testing.T) {
	ctx := browser(t)
	v := nowhere(t)
	c := startNode(t, node.RoleConsumer, v, "consumer")
	w := startNode(t, node.RoleWorker, v, "worker")

	// The API needs the token; the dashboard's files do not.
	for _, p := range []string{"/v1/info", "/v1/groups", "/v1/jobs", "/v1/balance"} {
		if got := status(t, base(c)+p, ""); got != 401 {
			t.Errorf("GET %s without token: %d, want 401", p, got)
		}
		if got := status(t, base(c)+p, "wrong-token-wrong-token"); got != 401 {
			t.Errorf("GET %s with a wrong token: %d, want 401", p, got)
		}
	}
	if got := status(t, base(c)+"/v1/info", c.Token()); got != 200 {
		t.Errorf("GET /v1/info with the token: %d", got)
	}
	for _, p := range []string{"/", "/app.css", "/ui.js", "/node.js"} {
		if got := status(t, base(c)+p, ""); got != 200 {
			t.Errorf("GET %s: %d, want 200", p, got)
		}
	}

	// Without a token: the login page; the page's own API call is refused.
	run(t, ctx, 30*time.Second, chromedp.Navigate(base(c)+"/"))
	waitFor(t, ctx, "login page", `document.body.dataset.state === "login" && !document.querySelector("#login").hidden`, pageText, 15*time.Second)
	var code int
	eval(t, ctx, `fetch("/v1/info").then(r => r.status)`, &code)
	if code != 401 {
		t.Errorf("fetch /v1/info from the page without token: %d, want 401", code)
	}
	screenshot(t, ctx, "login")

	// A wrong token is refused with a message.
	run(t, ctx, 30*time.Second,
		chromedp.SendKeys("#token-input", "not-the-token", chromedp.ByQuery),
		chromedp.Click(`#login-form button[type="submit"]`, chromedp.ByQuery))
	waitFor(t, ctx, "refusal message", `document.querySelector("#login-error").textContent.includes("refused")`, pageText, 15*time.Second)

	// The right token typed in signs in.
	run(t, ctx, 30*time.Second,
		chromedp.Evaluate(`document.querySelector("#token-input").value = ""`, nil),
		chromedp.SendKeys("#token-input", c.Token(), chromedp.ByQuery),
		chromedp.Click(`#login-form button[type="submit"]`, chromedp.ByQuery))
	waitFor(t, ctx, "consumer page", `document.body.dataset.view === "consumer" && !document.querySelector("#view-consumer").hidden`, pageText, 15*time.Second)

	// Log out, then the one-time link.
	run(t, ctx, 30*time.Second, chromedp.Click("#logout", chromedp.ByQuery))
	waitFor(t, ctx, "login page after logout", `document.body.dataset.state === "login"`, pageText, 15*time.Second)
	run(t, ctx, 30*time.Second, chromedp.Navigate(base(c)+"/#token="+c.Token()))
	waitFor(t, ctx, "consumer page from the link", `document.body.dataset.view === "consumer" && !document.querySelector("#view-consumer").hidden`, pageText, 15*time.Second)
	var href string
	eval(t, ctx, `location.href`, &href)
	if strings.Contains(href, c.Token()) {
		t.Errorf("the token stays in the address bar: %s", href)
	}
	var tabs string
	eval(t, ctx, `[...document.querySelectorAll("#nav a")].filter(a => !a.hidden).map(a => a.dataset.tab).join(",")`, &tabs)
	if tabs != "consumer,network" {
		t.Errorf("consumer node shows tabs %q, want consumer,network", tabs)
	}
	var role string
	eval(t, ctx, `document.querySelector("#role-badge").textContent`, &role)
	if role != "consumer" {
		t.Errorf("role badge %q", role)
	}
	// No verifier: the statement is unavailable, and the page says so.
	waitFor(t, ctx, "verifier-unavailable banner", `!document.querySelector("#banner").hidden && document.querySelector("#banner").textContent.includes("unavailable")`, pageText, 30*time.Second)
	screenshot(t, ctx, "consumer-empty")

	run(t, ctx, 30*time.Second, chromedp.Navigate(base(c)+"/#/network"))
	waitFor(t, ctx, "network page", `document.body.dataset.view === "network" && document.querySelector("#self-table").innerText.includes(`+jsString(c.ID().String())+`)`, pageText, 15*time.Second)
	screenshot(t, ctx, "network")

	// A token kept in the session that the node no longer accepts (here:
	// another node's) goes back to the login page.
	run(t, ctx, 30*time.Second, chromedp.Navigate(base(c)+"/#token="+w.Token()))
	waitFor(t, ctx, "login after a refused token", `document.body.dataset.state === "login" && document.querySelector("#login-error").textContent.includes("refused")`, pageText, 15*time.Second)

	// The worker node: worker and network tabs, rating not yet given.
	run(t, ctx, 30*time.Second, chromedp.Navigate(base(w)+"/#token="+w.Token()))
	waitFor(t, ctx, "worker page", `document.body.dataset.view === "worker" && document.querySelector("#r-speed").textContent === "not rated yet"`, pageText, 15*time.Second)
	eval(t, ctx, `[...document.querySelectorAll("#nav a")].filter(a => !a.hidden).map(a => a.dataset.tab).join(",")`, &tabs)
	if tabs != "worker,network" {
		t.Errorf("worker node shows tabs %q, want worker,network", tabs)
	}
	// The consumer page is not offered to a worker.
	run(t, ctx, 30*time.Second, chromedp.Navigate(base(w)+"/#/consumer"))
	waitFor(t, ctx, "worker page instead of consumer", `document.body.dataset.view === "worker"`, pageText, 15*time.Second)
	screenshot(t, ctx, "worker-empty")

	// Phone: nothing is wider than the screen.
	run(t, ctx, 30*time.Second, emulatePhone())
	for _, view := range []string{"worker", "network"} {
		run(t, ctx, 30*time.Second, chromedp.Navigate(base(w)+"/#/"+view))
		waitFor(t, ctx, view+" page on a phone", `document.body.dataset.view === "`+view+`" && (document.querySelector("#w-jobs").textContent !== "–" || document.querySelector("#n-peers").textContent !== "–")`, pageText, 15*time.Second)
		time.Sleep(500 * time.Millisecond)
		noOverflow(t, ctx, view)
		screenshot(t, ctx, "phone-"+view)
	}
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

// phoneWidth is the emulated phone's screen width in CSS pixels.
const phoneWidth = 390

// emulatePhone makes the tab a 390×844 phone screen at 2× density.
func emulatePhone() chromedp.Action {
	return chromedp.EmulateViewport(phoneWidth, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)
}

// noOverflow checks that nothing on the page is wider than the phone's
// screen (wide tables scroll inside their own box). A mobile browser widens
// its layout viewport to fit what overflows, so the check compares with
// the screen width, not innerWidth.
func noOverflow(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	var sw int
	eval(t, ctx, `document.documentElement.scrollWidth`, &sw)
	if sw > phoneWidth+1 {
		var culprits string
		eval(t, ctx, fmt.Sprintf(`[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > %d && !e.closest(".scroll")).slice(0, 8).map(e => e.tagName + "#" + e.id + "." + e.className + " " + Math.round(e.getBoundingClientRect().right)).join("; ")`, phoneWidth+1), &culprits)
		t.Errorf("%s page is wider than the screen: scrollWidth %d > %d: %s", what, sw, phoneWidth, culprits)
	}
	// Text overflowing its box does not always count in scrollWidth; a
	// full-page screenshot shows it.
	var buf []byte
	var dpr float64
	eval(t, ctx, `window.devicePixelRatio`, &dpr)
	run(t, ctx, 30*time.Second, chromedp.FullScreenshot(&buf, 100))
	cfg, err := png.DecodeConfig(bytes.NewReader(buf))
	if err != nil {
		t.Fatal(err)
	}
	if float64(cfg.Width) > phoneWidth*dpr+1 {
		t.Errorf("%s page renders %d px wide on a %d px × %g screen", what, cfg.Width, phoneWidth, dpr)
	}
}
