// Package verifier is Aspen's trusted verifier service: the one party every
// node trusts. It implements the verifier side of docs/flows.md:
//
//   - registration and benchmarking of workers through the ordinary
//     assignment path, and signed speed/trust Ratings;
//   - the order book of rated workers (from its own ratings, offers'
//     prices and heartbeats) and replica selection (package market);
//   - job group submission, escrow of each task's maximum cost, signed
//     Assignments batched per worker, receipts, comparison of replicas,
//     secret spot checks and tie-breaks run on its own sandbox, the speed
//     rule, culprit strikes, settlement into the double-entry ledger
//     (package verifier/ledger), and Releases of verified results;
//   - liveness from heartbeats (silent workers are failed and their
//     replicas re-replicated), cancellations and signed account statements;
//   - the operator's HTTP API.
//
// Every decision is taken by package market (pure); this package feeds it
// events with an injected clock and random source and applies what it
// decides. Everything accepted is persisted durably before it is
// acknowledged, and Start resumes every open job after a crash. See
// docs/verifier.md.
package verifier
