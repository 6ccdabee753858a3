// Package integration holds Aspen's end-to-end tests under attack: real
// aspen-verifier and aspen-node processes on loopback, driven through their
// HTTP APIs and command lines, with cheating workers (built in the test from
// node/p2p, sandbox and protocol), crashes (kill -9 and restart on the same
// data directory), partitions and malformed input at every door.
//
// Run the whole catalogue and print its table with
//
//	go test ./integration -run TestAttackCatalogue -v -report
//
// README.md in this directory describes every scenario and keeps the latest
// table. The package has no non-test code: nothing here ships in a binary.
package integration
