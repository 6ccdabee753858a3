// Command primes counts the primes in a range. Input on stdin: "LO HI"
// (decimal, 0 <= LO <= HI <= 2^50). Output: the count, in decimal, and a
// newline.
//
//	GOOS=wasip1 GOARCH=wasm go build -o primes.wasm ./examples/primes
//	echo "1 1000000" | aspen-node exec primes.wasm    # prints 78498
package main

import (
	"io"
	"os"
	"strconv"

	"github.com/aspen-market/aspen/examples/primes/kernel"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err.Error())
	}
	lo, hi, err := kernel.ParseRange(in)
	if err != nil {
		fail(err.Error())
	}
	out := strconv.AppendUint(nil, kernel.CountPrimes(lo, hi), 10)
	os.Stdout.Write(append(out, '\n'))
}

func fail(msg string) {
	os.Stderr.WriteString("primes: " + msg + "\n")
	os.Exit(2)
}
