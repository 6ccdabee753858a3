// Command hashchain iterates SHA-256. Input on stdin: a first line with the
// round count N, then the data. Output: the hex digest of SHA-256 applied N
// times to the data, and a newline.
//
//	GOOS=wasip1 GOARCH=wasm go build -o hashchain.wasm ./examples/hashchain
//	printf '1000000\nhello' | aspen-node exec hashchain.wasm
package main

import (
	"encoding/hex"
	"io"
	"os"

	"github.com/aspen-market/aspen/examples/hashchain/kernel"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err.Error())
	}
	rounds, data, err := kernel.Parse(in)
	if err != nil {
		fail(err.Error())
	}
	sum := kernel.Chain(data, rounds)
	os.Stdout.WriteString(hex.EncodeToString(sum[:]) + "\n")
}

func fail(msg string) {
	os.Stderr.WriteString("hashchain: " + msg + "\n")
	os.Exit(2)
}
