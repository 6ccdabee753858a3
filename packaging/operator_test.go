package packaging

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Docker cannot run where the tests run, so the container files are
// checked for what can be checked without it: they parse, the compose file
// runs a verifier, three workers and a consumer from the image the
// Dockerfile builds, the image runs as an unprivileged user, and the
// entry point is valid shell.

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from []string
	user := ""
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "FROM":
			from = append(from, l)
		case "USER":
			user = f[1]
		case "COPY":
			for _, src := range f[1 : len(f)-1] {
				if !strings.HasPrefix(src, "--") && !strings.HasPrefix(src, "/") && src != "." {
					if _, err := os.Stat("../" + src); err != nil {
						t.Errorf("COPY %s: %v", src, err)
					}
				}
			}
		}
	}
	if len(from) < 2 {
		t.Errorf("want a multi-stage build, got %d FROM lines", len(from))
	}
	if user == "" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0") {
		t.Errorf("the image runs as %q, want an unprivileged user", user)
	}
	for _, pkg := range []string{"./cmd/aspen-node", "./cmd/aspen-verifier"} {
		if !strings.Contains(string(b), pkg) {
			t.Errorf("the Dockerfile does not build %s", pkg)
		}
	}
	if out, err := exec.Command("sh", "-n", "docker/entrypoint.sh").CombinedOutput(); err != nil {
		t.Errorf("docker/entrypoint.sh: %v\n%s", err, out)
	}
}

func TestCompose(t *testing.T) {
	b, err := os.ReadFile("../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Build     any            `yaml:"build"`
			Command   []string       `yaml:"command"`
			DependsOn map[string]any `yaml:"depends_on"`
			Volumes   []string       `yaml:"volumes"`
			Ports     []string       `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	roles := map[string]string{"worker1": "worker", "worker2": "worker", "worker3": "worker", "consumer": "consumer"}
	for name, role := range roles {
		s, ok := c.Services[name]
		switch {
		case !ok:
			t.Errorf("no service %s", name)
		case s.Build == nil:
			t.Errorf("%s: not built from the Dockerfile", name)
		case len(s.Command) < 2 || s.Command[0] != "node" || s.Command[1] != role:
			t.Errorf("%s: command %q, want node %s", name, s.Command, role)
		case s.DependsOn["verifier"] == nil:
			t.Errorf("%s does not wait for the verifier", name)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond the host's loopback", name, p)
			}
		}
	}
	v, ok := c.Services["verifier"]
	if !ok || !slices.Equal(v.Command, []string{"verifier"}) {
		t.Errorf("verifier service: %+v", v)
	}
	if len(c.Services) != 5 {
		t.Errorf("%d services, want the verifier, three workers and a consumer", len(c.Services))
	}
}

// metricNames are the metrics the node and the verifier export, read from
// their sources (a histogram also as _bucket, _sum and _count).
func metricNames(t *testing.T) map[string]bool {
	names := map[string]bool{"up": true}
	node, err := os.ReadFile("../node/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`Name: "(aspen_node_[a-z_]+)"`).FindAllStringSubmatch(string(node), -1) {
		names[m[1]] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			names[m[1]+s] = true
		}
	}
	ver, err := os.ReadFile("../verifier/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`desc\("([a-z_]+)"`).FindAllStringSubmatch(string(ver), -1) {
		names["aspen_verifier_"+m[1]] = true
	}
	if len(names) < 20 {
		t.Fatalf("found only %d metric names: did the metrics' declarations change form?", len(names))
	}
	return names
}

var metricRef = regexp.MustCompile(`\b(aspen_[a-z_]+|up)\b`)

func checkExpr(t *testing.T, where, expr string, names map[string]bool) {
	t.Helper()
	found := false
	for _, m := range metricRef.FindAllString(expr, -1) {
		found = true
		if !names[m] {
			t.Errorf("%s: metric %s is not exported by the node or the verifier", where, m)
		}
	}
	if !found {
		t.Errorf("%s: %q uses no metric", where, expr)
	}
}

func TestPrometheusAlerts(t *testing.T) {
	names := metricNames(t)
	b, err := os.ReadFile("prometheus/aspen-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			seen[r.Alert] = true
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: needs a severity and a summary", r.Alert)
			}
			checkExpr(t, r.Alert, r.Expr, names)
		}
	}
	for _, a := range []string{"AspenVerifierDown", "AspenWorkersSilent", "AspenFailedTaskRate", "AspenEscrowStuck"} {
		if !seen[a] {
			t.Errorf("no alert %s", a)
		}
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(p, "check", "rules", "prometheus/aspen-alerts.yml").CombinedOutput(); err != nil {
			t.Errorf("promtool: %v\n%s", err, out)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	names := metricNames(t)
	b, err := os.ReadFile("grafana/aspen-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Panels) < 8 {
		t.Errorf("%d panels", len(d.Panels))
	}
	latency := false
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkExpr(t, p.Title, tg.Expr, names)
			latency = latency || strings.Contains(tg.Expr, "histogram_quantile")
		}
	}
	if !latency {
		t.Error("no latency panel (histogram_quantile)")
	}
}
