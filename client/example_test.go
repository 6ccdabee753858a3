package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/protocol"
)

// Map runs a WebAssembly module on every input through the market and
// returns the results in input order. The local node is found from
// ASPEN_API/ASPEN_TOKEN or its data directory ($HOME/.aspen).
func ExampleClient_Map() {
	c, err := client.FromEnv("")
	if err != nil {
		log.Fatal(err)
	}
	module, err := os.ReadFile("examples/wasm/primes.wasm")
	if err != nil {
		log.Fatal(err)
	}
	inputs := [][]byte{[]byte("the quick brown fox"), []byte("jumps over"), []byte("the lazy dog")}

	maxPrice, _ := protocol.ParseAmount("0.04") // per hour of a worker's machine
	res, err := c.Map(context.Background(), module, inputs, client.MapOptions{
		MaxPrice: maxPrice,
		Timeout:  time.Minute,
		Progress: func(p client.Progress) {
			fmt.Fprintf(os.Stderr, "\r%d/%d done, spent %s", p.Finished(), p.Total, p.Spent)
		},
	})
	if err != nil && res == nil {
		log.Fatal(err) // nothing was submitted
	}
	for _, r := range res {
		var te *client.TaskError
		switch {
		case errors.As(r.Err, &te):
			fmt.Fprintln(os.Stderr, te) // e.g. "input 1: job exited with status 3: bad input"
		case r.Err != nil:
			fmt.Fprintln(os.Stderr, r.Err)
		default:
			fmt.Printf("%d: %s", r.Index, r.Stdout)
		}
	}
	if err != nil {
		log.Fatal(err) // e.g. refused by the verifier, or canceled
	}
}

// MapStream delivers results as soon as they are verified, in any order.
func ExampleClient_MapStream() {
	c, err := client.FromEnv("")
	if err != nil {
		log.Fatal(err)
	}
	module, _ := os.ReadFile("examples/wasm/primes.wasm")
	inputs := [][]byte{[]byte("a"), []byte("b")}
	err = c.MapStream(context.Background(), module, inputs, client.MapOptions{MaxPrice: 40_000},
		func(r client.Result) {
			fmt.Printf("input %d finished: %q %v\n", r.Index, r.Stdout, r.Err)
		})
	if err != nil {
		log.Fatal(err)
	}
}
