// Command montecarlo estimates π by throwing random points at a square.
// Input on stdin: "SEED SAMPLES" (decimal). Output: one line
// "pi ~ 3.14159265 (hits H of N)". The generator is seeded from the input,
// so a run is reproducible anywhere.
//
//	GOOS=wasip1 GOARCH=wasm go build -o montecarlo.wasm ./examples/montecarlo
//	echo "42 10000000" | aspen-node exec montecarlo.wasm
package main

import (
	"io"
	"os"
	"strconv"

	"github.com/aspen-market/aspen/examples/montecarlo/kernel"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err.Error())
	}
	seed, samples, err := kernel.Parse(in)
	if err != nil {
		fail(err.Error())
	}
	hits := kernel.Hits(seed, samples)
	line := "pi ~ " + kernel.Estimate(hits, samples, 8) +
		" (hits " + strconv.FormatUint(hits, 10) + " of " + strconv.FormatUint(samples, 10) + ")\n"
	os.Stdout.WriteString(line)
}

func fail(msg string) {
	os.Stderr.WriteString("montecarlo: " + msg + "\n")
	os.Exit(2)
}
