// Package ledger is the verifier's authoritative double-entry ledger. It
// owns the accounts and balances of every participant, the append-only
// journal of postings, and payout batches. It persists everything through
// store.Durable, so a posting is acknowledged only once it is on stable
// storage, and many concurrent postings share one fsync.
//
// Every posting's entries sum to zero, so money is never created or lost:
// the sum over all accounts (including "external", the outside world) is
// always zero. Postings are idempotent on their ID; balances are kept in
// memory, checkpointed to the store every few thousand postings and
// re-derived from the journal after the checkpoint at Open, and Check
// replays the whole journal against both. Accounts of consumers, escrows,
// workers and the operator can never go negative: a posting that would make
// one negative is refused with ErrInsufficientFunds.
//
// See docs/ledger.md for accounts, posting kinds, idempotency keys and
// durability.
package ledger
