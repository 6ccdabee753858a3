package store

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by the store wrap one of these (or a
// protocol error such as protocol.ErrCIDMismatch) so callers can use
// errors.Is.
var (
	// ErrNotFound: no blob or record under that key.
	ErrNotFound = errors.New("store: not found")
	// ErrCorrupt: stored bytes failed verification (CID, chunk hash, or a
	// metadata record that does not decode). Corrupt data is never returned.
	ErrCorrupt = errors.New("store: corrupt data")
	// ErrTooLarge: a blob or record exceeds a configured or requested limit.
	ErrTooLarge = errors.New("store: too large")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrInvalid: a bad argument (namespace, key, configuration).
	ErrInvalid = errors.New("store: invalid argument")
	// ErrStop may be returned by a Scan callback to end the scan early;
	// Scan then returns nil.
	ErrStop = errors.New("store: stop scan")
)

// notFoundError is the ErrNotFound of a record lookup (Tx.Get). A miss is
// routine on hot paths (every new ledger posting looks up its ID and finds
// nothing), so the message is formatted only if someone asks for it:
// formatting it at every miss cost about 0.9 µs, a fifth of the ledger
// committer's work per posting.
type notFoundError struct {
	ns  string
	key []byte // a copy
}

func (e *notFoundError) Error() string { return fmt.Sprintf("%v: %s/%q", ErrNotFound, e.ns, e.key) }

func (e *notFoundError) Unwrap() error { return ErrNotFound }
