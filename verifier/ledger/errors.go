package ledger

import "errors"

// Sentinel errors; returned errors wrap one of these (or a store error).
var (
	// ErrInvalid: a malformed posting, account, amount or argument.
	ErrInvalid = errors.New("ledger: invalid")
	// ErrConflict: a posting ID already used by a posting with different
	// content.
	ErrConflict = errors.New("ledger: conflicting posting")
	// ErrInsufficientFunds: the posting would make a non-negative account
	// negative. The error names the account, its balance and the amount.
	ErrInsufficientFunds = errors.New("ledger: insufficient funds")
	// ErrNotFound: no such posting or payout batch.
	ErrNotFound = errors.New("ledger: not found")
	// ErrInconsistent: Check found stored state that does not match the
	// journal.
	ErrInconsistent = errors.New("ledger: inconsistent")
	// ErrCorrupt: a stored record does not decode.
	ErrCorrupt = errors.New("ledger: corrupt record")
)
