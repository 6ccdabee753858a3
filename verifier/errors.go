package verifier

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them (or an
// error of the package that failed: store, ledger, p2p, sandbox).
var (
	// ErrInvalidConfig: a Config field is missing or out of range.
	ErrInvalidConfig = errors.New("verifier: invalid config")
	// ErrClosed: the verifier is closed or not started.
	ErrClosed = errors.New("verifier: closed")
	// ErrNotFound: no such group, task, worker or account.
	ErrNotFound = errors.New("verifier: not found")
	// ErrBadRequest: an operator request or a peer's message is malformed.
	ErrBadRequest = errors.New("verifier: bad request")
	// ErrUnauthorized: a signer or operator token does not match.
	ErrUnauthorized = errors.New("verifier: unauthorized")
	// ErrBenchmark: a benchmark could not be prepared or was failed.
	ErrBenchmark = errors.New("verifier: benchmark failed")
	// ErrCorrupt: a persisted record does not decode.
	ErrCorrupt = errors.New("verifier: corrupt record")
)
