package client

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLightDependencies: importing the client pulls in the standard
// library and protocol/units, nothing else: no libp2p, protobuf,
// multiformats or CID packages.
func TestLightDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "github.com/aspen-market/aspen/client").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var got []string
	for _, p := range strings.Fields(string(out)) {
		got = append(got, p)
	}
	want := "github.com/aspen-market/aspen/protocol/units github.com/aspen-market/aspen/client"
	if strings.Join(got, " ") != want {
		t.Errorf("client's non-standard dependencies: %q, want %q", got, want)
	}
}
