// Command genwasm rebuilds the prebuilt example modules in examples/wasm
// and records the Go version that built them. Run it with go generate in
// the examples directory.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/aspen-market/aspen/examples"
)

func main() {
	ctx := context.Background()
	dir := "wasm"
	for _, name := range examples.Names() {
		p, err := examples.Build(ctx, name, dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "genwasm:", err)
			os.Exit(1)
		}
		fmt.Println("built", p)
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "genwasm: go env GOVERSION:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(filepath.Join(dir, "GOVERSION"), []byte(strings.TrimSpace(string(out))+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "genwasm:", err)
		os.Exit(1)
	}
}
