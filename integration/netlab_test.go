package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A small Internet in Linux network namespaces: a "public" segment (a
// bridge in its own namespace) on 11.0.0.0/24 — a range libp2p counts as
// public, on a bridge nothing else reaches — with hosts on it, and homes:
// a host on a private LAN (10.N.0.0/24) behind a router namespace that
// masquerades it (nftables) and drops new inbound connections, like a
// home router. Processes run inside with `ip netns exec`; the test talks
// to their local HTTP APIs through sockets opened inside their namespace
// (nsDialer).
//
// Needs root, ip (iproute2) and nft (nftables). Not root: the tests skip.
// As root without the tools, or when building the network fails, they
// skip too, except under CI (CI set, as .ci/run does), where they fail.

// natKind is how a home router maps its LAN's connections.
type natKind string

const (
	// natEIM: port-preserving masquerade, the mapping of an inside
	// address and port is the same whatever the destination
	// (endpoint-independent mapping), filtering is per connection
	// (conntrack). Hole punching works through it.
	natEIM natKind = "endpoint-independent"
	// natSymmetric: every connection gets a random outside port
	// (masquerade fully-random), so the port a peer observed is useless
	// to another peer. Hole punching fails; only relays work.
	natSymmetric natKind = "symmetric"
)

const labWANPrefix = "11.0.0."

// netLab is one namespace network; everything it creates is deleted on
// cleanup.
type netLab struct {
	t      testing.TB
	prefix string // namespace name prefix, unique to this process
	inet   string // the namespace holding the public bridge
	ports  int    // bridge ports made so far
	nss    []string
}

// labHost is one namespace with a process slot.
type labHost struct {
	lab  *netLab
	ns   string
	ip   string // its address (private for a home host)
	wan  string // the address peers see: its own, or its router's
	kind natKind
}

// requireLab skips unless the test runs as root; as root, it skips (or,
// under CI, fails) when the tools to build the network are missing.
func requireLab(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the namespace network needs root (it builds network namespaces, veth pairs, a bridge and nftables NAT); run as root to include it")
	}
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			fail("the namespace network needs %s (apt-get install iproute2 nftables): %v", bin, err)
		}
	}
}

// labPrefix names this process's namespaces; leftovers of dead processes
// (a killed test run) are deleted first.
var labNS = regexp.MustCompile(`^aspl(\d+)-`)

func newNetLab(t testing.TB) *netLab {
	t.Helper()
	requireLab(t)
	l := &netLab{t: t, prefix: fmt.Sprintf("aspl%d-", os.Getpid())}
	l.reapStale()
	t.Cleanup(l.destroy)
	l.inet = l.newNS("inet")
	l.must("ip", "-n", l.inet, "link", "add", "br0", "type", "bridge")
	l.must("ip", "-n", l.inet, "link", "set", "br0", "up")
	return l
}

func (l *netLab) reapStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := labNS.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		killNSProcs(name)
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

// must runs a command, failing the test (or skipping it, outside CI) if it
// fails: a machine that cannot build the network is not a product bug.
func (l *netLab) must(name string, args ...string) string {
	return l.mustIn(nil, name, args...)
}

func (l *netLab) mustIn(stdin []byte, name string, args ...string) string {
	l.t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("building the namespace network: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		if os.Getenv("CI") != "" {
			l.t.Fatal(msg)
		}
		l.t.Skip(msg)
	}
	return string(out)
}

func (l *netLab) newNS(role string) string {
	ns := l.prefix + role
	l.must("ip", "netns", "add", ns)
	l.nss = append(l.nss, ns)
	l.must("ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// plug connects namespace ns to the public bridge as device dev with
// address ip.
func (l *netLab) plug(ns, dev, ip string) {
	l.ports++
	port := fmt.Sprintf("p%d", l.ports)
	l.must("ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", port, "netns", l.inet)
	l.must("ip", "-n", l.inet, "link", "set", port, "master", "br0")
	l.must("ip", "-n", l.inet, "link", "set", port, "up")
	l.must("ip", "-n", ns, "addr", "add", ip+"/24", "dev", dev)
	l.must("ip", "-n", ns, "link", "set", dev, "up")
}

// public adds a host on the public segment at 11.0.0.last.
func (l *netLab) public(role string, last int) *labHost {
	ns := l.newNS(role)
	ip := fmt.Sprintf("%s%d", labWANPrefix, last)
	l.plug(ns, "eth0", ip)
	return &labHost{lab: l, ns: ns, ip: ip, wan: ip}
}

// home adds a router at 11.0.0.(20+n) doing NAT of kind for a LAN
// 10.n.0.0/24, and a host 10.n.0.2 on that LAN.
func (l *netLab) home(role string, n int, kind natKind) *labHost {
	router := l.newNS(role + "-nat")
	wan := fmt.Sprintf("%s%d", labWANPrefix, 20+n)
	l.plug(router, "wan", wan)
	host := l.newNS(role)
	lanGW, lanIP := fmt.Sprintf("10.%d.0.1", n), fmt.Sprintf("10.%d.0.2", n)
	l.must("ip", "-n", router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", host)
	l.must("ip", "-n", router, "addr", "add", lanGW+"/24", "dev", "lan")
	l.must("ip", "-n", router, "link", "set", "lan", "up")
	l.must("ip", "-n", host, "addr", "add", lanIP+"/24", "dev", "eth0")
	l.must("ip", "-n", host, "link", "set", "eth0", "up")
	l.must("ip", "-n", host, "route", "add", "default", "via", lanGW)
	l.must("ip", "netns", "exec", router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	masq := "masquerade"
	if kind == natSymmetric {
		masq = "masquerade fully-random"
	}
	// Outbound: masqueraded behind the router's address. Inbound: only
	// what belongs to a connection from inside (conntrack); anything new
	// is dropped, also at the router itself (no RST, as home routers do).
	rules := fmt.Sprintf(`
table ip aspen_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" %s
	}
}
table inet aspen_fw {
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" drop
	}
}
`, masq)
	l.mustIn([]byte(rules), "ip", "netns", "exec", router, "nft", "-f", "-")
	return &labHost{lab: l, ns: host, ip: lanIP, wan: wan, kind: kind}
}

func (l *netLab) destroy() {
	for i := len(l.nss) - 1; i >= 0; i-- {
		killNSProcs(l.nss[i])
		if out, err := exec.Command("ip", "netns", "del", l.nss[i]).CombinedOutput(); err != nil {
			l.t.Logf("deleting namespace %s: %v %s", l.nss[i], err, out)
		}
	}
}

// killNSProcs kills whatever still runs in a namespace (the harness kills
// its processes first; this catches what they left).
func killNSProcs(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// command is bin with args run inside the host's namespace.
func (h *labHost) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, bin}, args...)...)
}

// httpClient talks to servers inside the host's namespace.
func (h *labHost) httpClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: nsDialer(h.nsPath())}}
}

// nsDialer dials from inside the network namespace at path.
func nsDialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(path, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// inNS runs f on an OS thread that has entered the network namespace at
// path (sockets f opens belong to it), then returns the thread to the
// test's namespace. A thread that cannot return is never reused (it stays
// locked and exits with its goroutine).
func inNS(path string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer self.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer target.Close()
		if err := setns(target.Fd()); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		err = f()
		if setns(self.Fd()) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

// nsPath is the host's namespace file.
func (h *labHost) nsPath() string { return "/var/run/netns/" + h.ns }

func setns(fd uintptr) error {
	return unix.Setns(int(fd), unix.CLONE_NEWNET)
}
