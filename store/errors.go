package store

import "errors"

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
