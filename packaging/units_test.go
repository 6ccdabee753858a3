// Package packaging holds the systemd units and install scripts; its test
// checks the units' syntax and the directives the product promises (lowest
// CPU and I/O priority, a memory cap, a dedicated user, hardening).
package packaging

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unit is a parsed systemd unit file: section → key → values (in order;
// a key may repeat).
type unit map[string]map[string][]string

// get returns the last value of section.key and whether it is set.
func (u unit) get(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

var keyRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)

// parseUnit parses systemd's INI-like syntax strictly: comments (# ;),
// [Section] headers, Key=Value lines, backslash continuations.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	n := 0
	var cont strings.Builder
	contStart := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.HasSuffix(line, " ") || strings.HasSuffix(line, "\t") {
			t.Errorf("%s:%d: trailing whitespace", path, n)
		}
		if cont.Len() > 0 {
			line = cont.String() + strings.TrimSpace(line)
			cont.Reset()
		} else {
			contStart = n
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cont.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		if trimmed[0] == '[' {
			if !strings.HasSuffix(trimmed, "]") {
				t.Errorf("%s:%d: bad section header %q", path, contStart, trimmed)
				continue
			}
			section = trimmed[1 : len(trimmed)-1]
			if _, dup := u[section]; dup {
				t.Errorf("%s:%d: section [%s] repeated", path, contStart, section)
			}
			u[section] = map[string][]string{}
			continue
		}
		if section == "" {
			t.Errorf("%s:%d: %q outside any section", path, contStart, trimmed)
			continue
		}
		k, v, ok := strings.Cut(trimmed, "=")
		k = strings.TrimSpace(k)
		if !ok || !keyRE.MatchString(k) {
			t.Errorf("%s:%d: not a Key=Value line: %q", path, contStart, trimmed)
			continue
		}
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cont.Len() > 0 {
		t.Errorf("%s: file ends in a line continuation", path)
	}
	for s := range u {
		switch s {
		case "Unit", "Service", "Install":
		default:
			t.Errorf("%s: unexpected section [%s]", path, s)
		}
	}
	return u
}

// want checks section.key == value.
func want(t *testing.T, name string, u unit, section, key, value string) {
	t.Helper()
	got, ok := u.get(section, key)
	if !ok {
		t.Errorf("%s: [%s] %s= missing (want %q)", name, section, key, value)
	} else if got != value {
		t.Errorf("%s: [%s] %s=%s, want %q", name, section, key, got, value)
	}
}

// bytesOf parses a systemd size such as 2G, 1536M or 1073741824.
func bytesOf(t *testing.T, s string) uint64 {
	t.Helper()
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("bad size %q", s)
	}
	return v * mult
}

var hardening = map[string]string{
	"NoNewPrivileges":       "yes",
	"ProtectSystem":         "strict",
	"ProtectHome":           "yes",
	"PrivateTmp":            "yes",
	"PrivateDevices":        "yes",
	"ProtectKernelModules":  "yes",
	"ProtectKernelTunables": "yes",
	"ProtectControlGroups":  "yes",
	"RestrictSUIDSGID":      "yes",
	"RestrictRealtime":      "yes",
	"CapabilityBoundingSet": "",
}

func checkCommon(t *testing.T, name string, u unit, user, dir, exe string) {
	want(t, name, u, "Service", "User", user)
	want(t, name, u, "Service", "StateDirectory", filepath.Base(dir))
	want(t, name, u, "Service", "ReadWritePaths", dir)
	want(t, name, u, "Service", "Restart", "on-failure")
	want(t, name, u, "Install", "WantedBy", "multi-user.target")
	start, _ := u.get("Service", "ExecStart")
	if start != exe+" start --data "+dir {
		t.Errorf("%s: ExecStart=%s", name, start)
	}
	for k, v := range hardening {
		want(t, name, u, "Service", k, v)
	}
	// wazero compiles wasm to native code: W^X enforcement would break it.
	if v, ok := u.get("Service", "MemoryDenyWriteExecute"); ok && v != "no" {
		t.Errorf("%s: MemoryDenyWriteExecute=%s breaks the wasm compiler", name, v)
	}
	high, okH := u.get("Service", "MemoryHigh")
	limit, okM := u.get("Service", "MemoryMax")
	if !okH || !okM {
		t.Errorf("%s: MemoryHigh and MemoryMax must both be set", name)
	} else if bytesOf(t, high) >= bytesOf(t, limit) {
		t.Errorf("%s: MemoryHigh=%s is not below MemoryMax=%s", name, high, limit)
	}
}

func TestNodeUnit(t *testing.T) {
	u := parseUnit(t, "aspen-node.service")
	checkCommon(t, "aspen-node.service", u, "aspen", "/var/lib/aspen", "/usr/local/bin/aspen-node")
	// The lowest priority there is, for CPU and for I/O.
	want(t, "aspen-node.service", u, "Service", "Nice", "19")
	want(t, "aspen-node.service", u, "Service", "CPUSchedulingPolicy", "idle")
	want(t, "aspen-node.service", u, "Service", "IOSchedulingClass", "idle")
	limit, _ := u.get("Service", "MemoryMax")
	if b := bytesOf(t, limit); b > 8<<30 || b < 256<<20 {
		t.Errorf("MemoryMax=%s: want a cap between 256M and 8G", limit)
	}
}

func TestVerifierUnit(t *testing.T) {
	u := parseUnit(t, "aspen-verifier.service")
	checkCommon(t, "aspen-verifier.service", u, "aspen-verifier", "/var/lib/aspen-verifier", "/usr/local/bin/aspen-verifier")
}

// TestSystemdAnalyzeVerify runs systemd's own checker when it is installed
// (Debian package systemd). ExecStart is pointed at an existing program,
// since the binaries are not installed here.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	var files []string
	for _, name := range []string{"aspen-node.service", "aspen-verifier.service"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/local/bin/aspen-node ", "/bin/true ")
		s = strings.ReplaceAll(s, "/usr/local/bin/aspen-verifier ", "/bin/true ")
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	out, err := exec.Command(sa, append([]string{"verify"}, files...)...).CombinedOutput()
	// systemd-analyze exits 0 on unknown keys and bad values, printing a
	// warning: any line about our files is a failure.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dir) {
			t.Errorf("systemd-analyze: %s", line)
		}
	}
	if err != nil {
		t.Logf("systemd-analyze verify: %v\n%s", err, out)
		if strings.Contains(string(out), dir) {
			t.Fail()
		}
	}
}

func TestCIInstallScript(t *testing.T) {
	st, err := os.Stat("ci-install-chromium.sh")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&0o111 == 0 {
		t.Error("ci-install-chromium.sh is not executable")
	}
	if out, err := exec.Command("sh", "-n", "ci-install-chromium.sh").CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v\n%s", err, out)
	}
}
