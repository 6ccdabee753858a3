package market

import "errors"

// Sentinel errors. Every error returned by this package wraps one of them,
// so callers can branch with errors.Is.
var (
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("market: invalid config")
	// ErrInvalidOffer: an Offer is malformed (empty worker, zero speed, ...).
	ErrInvalidOffer = errors.New("market: invalid offer")
	// ErrInvalidBid: a Bid is malformed or outside the configured limits.
	ErrInvalidBid = errors.New("market: invalid bid")
	// ErrNoEligibleWorkers: the book cannot supply the replicas asked for.
	// The concrete error is a *SelectError carrying the reason counts.
	ErrNoEligibleWorkers = errors.New("market: not enough eligible workers")
	// ErrOverflow: an amount does not fit in int64 micro-units.
	ErrOverflow = errors.New("market: amount overflows")
	// ErrConstraint: an assignment violates the task's price or speed bound.
	ErrConstraint = errors.New("market: assignment violates the bid")
	// ErrDuplicateWorker: the worker already holds or held this task.
	ErrDuplicateWorker = errors.New("market: worker already holds or held this task")
	// ErrUnknownReplica: no replica of this task is held by that worker.
	ErrUnknownReplica = errors.New("market: no such replica")
	// ErrNotRunning: the replica is no longer running (already reported,
	// failed or timed out), so the event is refused.
	ErrNotRunning = errors.New("market: replica is not running")
	// ErrBadReceipt: a receipt or verifier run is malformed.
	ErrBadReceipt = errors.New("market: bad receipt")
	// ErrVerifierDone: the verifier's run was already recorded.
	ErrVerifierDone = errors.New("market: verifier run already recorded")
	// ErrTaskFinal: the task is decided (verified or failed); it takes no
	// new assignments or runs.
	ErrTaskFinal = errors.New("market: task is already decided")
	// ErrNotFinal: settlement was asked for a task that is not decided.
	ErrNotFinal = errors.New("market: task is not decided yet")
	// ErrAlreadySettled: the task was settled before; settling twice is refused.
	ErrAlreadySettled = errors.New("market: task already settled")
)
