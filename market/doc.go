// Package market is Aspen's pure decision logic: the order book of worker
// offers and consumer bids and the random, trust-weighted matching between
// them; the per-task state machine that turns assignments, receipts,
// failures and verifier runs into decisions (wait, add replicas, verified,
// failed); the speed rule of the paper (§III-F/G) that decides which
// replicas are paid; culprit finding when results differ; the secret
// spot-check draw; settlement of a task into exact integer payouts, operator
// cut and escrow refund; and the trust rating built from strikes, failures
// (mean time to failure) and speed-compliance history.
//
// The package is pure: it does no I/O, starts no goroutines, never reads the
// clock (every function that needs the time takes now, in unix milliseconds)
// and owns no randomness source (the caller injects a Rand, normally a
// *math/rand/v2.Rand seeded secretly from crypto/rand). All state (Book,
// Task, Reputation) is plain data with exported fields, so the verifier can
// persist it as JSON and resume after a crash. The verifier's network code
// feeds events in and applies the decisions it gets back: ledger postings,
// new assignments, strikes.
//
// Units: money is protocol.Micros; prices are per hour of the worker's
// machine; speed is protocol.Speed (milli standard units, 1000 = the
// verifier's reference machine); execution times are integer microseconds;
// work L = speed × time is a Work, an exact 128-bit integer in
// milli-standard-unit microseconds. No float is used anywhere. docs/market.md
// states every rule as a formula.
package market
