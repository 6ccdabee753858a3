//go:build race

package main

// raceEnabled: the race detector slows the sandbox's compiler tenfold, so
// the whole-network test runs in the separate non-race pass of `make check`.
const raceEnabled = true
