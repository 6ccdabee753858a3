// Package node is the Aspen peer run by aspen-node: a worker that takes
// assignments signed by the pinned verifier and runs them in the sandbox, a
// consumer that submits job groups and collects verified results, or both.
// It owns the node's persistent state (groups, tasks, results, job history,
// ratings) in its store; networking lives in node/p2p, the HTTP API in
// node/api.go and the job runner in package sandbox.
package node
