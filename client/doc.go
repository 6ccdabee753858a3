// Package client is the Go client of an Aspen node's local HTTP API and the
// library form of the paper's "aspenize": a parallel map over a market of
// spare CPU cycles.
//
// A consumer runs aspen-node locally; this package talks to it over its
// token-protected API (see SPEC.md). The one call most programs need is
// [Client.Map]: give it a WebAssembly module (WASI preview 1) and a list of
// inputs, get back one [Result] per input, in input order. Every input runs
// as one job on at least two workers; the verifier compares the replicas and
// releases the result. Per-item failures (a trap, a non-zero exit, a task the
// verifier gave up on) are carried in [Result.Err] as a [*TaskError]; the
// error returned by Map itself is for the call as a whole.
//
//	c, err := client.FromEnv("")
//	if err != nil { ... }
//	res, err := c.Map(ctx, wasm, inputs, client.MapOptions{
//		MaxPrice: 40_000, // 0.04 per hour, in micro-units
//		Timeout:  10 * time.Minute, // escrow per task: replicas × MaxPrice × Timeout
//	})
//	for _, r := range res {
//		if r.Err != nil { log.Print(r.Err); continue }
//		os.Stdout.Write(r.Stdout)
//	}
//
// [Client.MapStream] delivers results as they are verified (in any order),
// and [Client.Wait] follows an already-submitted group. Canceling the
// context passed to Map or MapStream cancels the group on the node, so the
// escrow of unfinished tasks is refunded.
//
// The remaining methods are thin wrappers of the API's endpoints. Money is
// integer micro-units ([units.Micros]) and speed is milli standard units
// ([units.Speed]) everywhere in this package.
//
// The package is light: it imports the standard library and
// protocol/units only, not the network stack (libp2p, protobuf, CIDs),
// so a program that only submits work pulls in a few packages.
package client
