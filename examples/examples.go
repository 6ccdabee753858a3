// Package examples holds Aspen's example jobs, Go programs for WASI preview
// 1 that a consumer can copy: primes (count primes in a range), montecarlo
// (estimate π with a seeded generator) and hashchain (iterated SHA-256).
// Each lives in its own directory (main.go plus an importable kernel
// package, so the same computation also runs natively). The package embeds
// prebuilt modules (wasm/NAME.wasm, made by go generate) for programs that
// run where no Go toolchain is installed, such as the devnet, and can build
// them from source with Build.
package examples

//go:generate go run ./internal/genwasm

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

//go:embed wasm/*.wasm
var prebuilt embed.FS

// Sentinel errors.
var (
	// ErrUnknown: no example has that name.
	ErrUnknown = errors.New("examples: unknown example")
	// ErrNoSource: Build cannot find the examples' source or a Go toolchain.
	ErrNoSource = errors.New("examples: source or Go toolchain not available")
	// ErrBuild: go build failed.
	ErrBuild = errors.New("examples: build failed")
)

// names lists the examples, sorted; each has a directory with a main
// package and a prebuilt wasm/NAME.wasm.
var names = []string{"hashchain", "montecarlo", "primes"}

// Names returns the examples' names, sorted.
func Names() []string { return slices.Clone(names) }

// Module returns the prebuilt WebAssembly module of the named example.
func Module(name string) ([]byte, error) {
	if !slices.Contains(names, name) {
		return nil, fmt.Errorf("%w: %q (have %s)", ErrUnknown, name, strings.Join(names, ", "))
	}
	return prebuilt.ReadFile(path.Join("wasm", name+".wasm"))
}

// buildFlags are the go build flags Build uses. They make the output
// reproducible: the same source and toolchain give the same bytes.
var buildFlags = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// Build compiles the named example from source for GOOS=wasip1
// GOARCH=wasm into outDir/NAME.wasm and returns that path. It needs the
// Aspen source tree (found next to this package's source file) and a Go
// toolchain ("go" on PATH, or in GOROOT).
func Build(ctx context.Context, name, outDir string) (string, error) {
	if !slices.Contains(names, name) {
		return "", fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	src, err := sourceDir()
	if err != nil {
		return "", err
	}
	goBin, err := goTool()
	if err != nil {
		return "", err
	}
	out, err := filepath.Abs(filepath.Join(outDir, name+".wasm"))
	if err != nil {
		return "", err
	}
	args := append([]string{"build"}, buildFlags...)
	args = append(args, "-o", out, "./"+name)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOWASM=", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: %s: %w: %s", ErrBuild, name, err, strings.TrimSpace(string(msg)))
	}
	return out, nil
}

// sourceDir returns the directory holding this file, if it exists here.
func sourceDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", fmt.Errorf("%w: built without source paths (-trimpath)", ErrNoSource)
	}
	dir := filepath.Dir(file)
	if _, err := os.Stat(filepath.Join(dir, "examples.go")); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoSource, err)
	}
	return dir, nil
}

// goTool finds the go command.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: no go command on PATH or in GOROOT", ErrNoSource)
	}
	return p, nil
}

// goVersion returns the version of the go command Build uses.
func goVersion(ctx context.Context) (string, error) {
	goBin, err := goTool()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("%w: go env GOVERSION: %w", ErrNoSource, err)
	}
	return strings.TrimSpace(string(out)), nil
}
