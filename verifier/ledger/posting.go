package ledger

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/aspen-market/aspen/protocol"
)

// Accounts are strings with a kind prefix.
const (
	// External is the outside world: credits come from it and payouts go to
	// it, so its balance is minus all the money inside the system.
	External = "external"
	// Operator holds the operator's revenue (its cut of settlements).
	Operator = "operator"

	consumerPrefix = "consumer:"
	escrowPrefix   = "escrow:"
	workerPrefix   = "worker:"
)

// ConsumerAccount is the available balance of consumer p (a peer ID).
func ConsumerAccount(p string) string { return consumerPrefix + p }

// EscrowAccount holds consumer p's money reserved for running work.
func EscrowAccount(p string) string { return escrowPrefix + p }

// WorkerAccount is worker p's earned, unpaid balance.
func WorkerAccount(p string) string { return workerPrefix + p }

// Posting kinds. Each kind has a fixed shape of entries (see validate and
// docs/ledger.md); a posting of another shape is refused.
const (
	KindCredit   = "credit"   // external → consumer:P
	KindEscrow   = "escrow"   // consumer:P → escrow:P
	KindRelease  = "release"  // escrow:P → consumer:P
	KindSettle   = "settle"   // escrow:P → worker:*, operator, consumer:P
	KindPayout   = "payout"   // worker:* → external
	KindWithdraw = "withdraw" // consumer:P → external
	KindAdjust   = "adjust"   // operator correction: any accounts, memo required
)

// Limits.
const (
	MaxIDLen      = 256
	MaxMemoLen    = 1024
	MaxPeerLen    = 128
	MaxEntries    = 1 << 16
	maxAccountLen = len(consumerPrefix) + MaxPeerLen
)

// Entry moves Amount into Account (negative: out of it).
type Entry struct {
	Account string          `json:"account"`
	Amount  protocol.Micros `json:"amount"`
}

// Posting is one balanced journal transaction.
type Posting struct {
	// ID is the idempotency key, e.g. "settle/<group>/<task>". Posting the
	// same ID again is a no-op; with different content it is ErrConflict.
	ID string `json:"id"`
	// Time is unix milliseconds, supplied by the caller.
	Time int64 `json:"time"`
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Memo is free text for people.
	Memo string `json:"memo,omitempty"`
	// Entries sum to zero; each account appears once; no amount is zero.
	Entries []Entry `json:"entries"`
}

// JournalEntry is a posting as recorded, with its position in the journal.
type JournalEntry struct {
	Seq uint64 `json:"seq"`
	Posting
}

// AccountKind returns the kind of account a: "external", "operator",
// "consumer", "escrow" or "worker", and the peer ID for the last three.
func AccountKind(a string) (kind, peer string, err error) {
	switch a {
	case External:
		return External, "", nil
	case Operator:
		return Operator, "", nil
	}
	for _, p := range []string{consumerPrefix, escrowPrefix, workerPrefix} {
		if rest, ok := strings.CutPrefix(a, p); ok {
			if err := checkPeer(rest); err != nil {
				return "", "", fmt.Errorf("%w: account %q: %v", ErrInvalid, a, err)
			}
			return strings.TrimSuffix(p, ":"), rest, nil
		}
	}
	return "", "", fmt.Errorf("%w: account %q has no known kind", ErrInvalid, a)
}

// mustStayNonNegative reports whether account a may never go below zero:
// every account except external.
func mustStayNonNegative(a string) bool { return a != External }

func checkPeer(p string) error {
	if p == "" || len(p) > MaxPeerLen {
		return fmt.Errorf("peer ID must be 1..%d bytes", MaxPeerLen)
	}
	for _, r := range p {
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) || r == ':' {
			return fmt.Errorf("peer ID %q has a forbidden character", p)
		}
	}
	return nil
}

func checkText(what, s string, maxLen int, allowEmpty bool) error {
	if !allowEmpty && s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	}
	if len(s) > maxLen {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, what, maxLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, what)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: %s contains a control character", ErrInvalid, what)
		}
	}
	return nil
}

// Validate checks p: text fields, accounts, non-zero amounts, each account
// once, entries summing to zero without overflow, and the shape its Kind
// requires.
func (p *Posting) Validate() error {
	if err := checkText("posting ID", p.ID, MaxIDLen, false); err != nil {
		return err
	}
	if err := checkText("memo", p.Memo, MaxMemoLen, true); err != nil {
		return fmt.Errorf("posting %s: %w", p.ID, err)
	}
	if p.Time < 0 {
		return fmt.Errorf("%w: posting %s: negative time", ErrInvalid, p.ID)
	}
	if len(p.Entries) < 2 || len(p.Entries) > MaxEntries {
		return fmt.Errorf("%w: posting %s: needs 2..%d entries, has %d", ErrInvalid, p.ID, MaxEntries, len(p.Entries))
	}
	var buf [8]side
	sides := buf[:0]
	if len(p.Entries) > len(buf) {
		sides = make([]side, 0, len(p.Entries))
	}
	var seen map[string]bool
	if len(p.Entries) > 16 {
		seen = make(map[string]bool, len(p.Entries))
	}
	var sum protocol.Micros
	for i, e := range p.Entries {
		k, peer, err := AccountKind(e.Account)
		if err != nil {
			return fmt.Errorf("posting %s: %w", p.ID, err)
		}
		dup := false
		if seen != nil {
			dup = seen[e.Account]
			seen[e.Account] = true
		} else {
			for _, f := range p.Entries[:i] {
				dup = dup || f.Account == e.Account
			}
		}
		if dup {
			return fmt.Errorf("%w: posting %s: account %s appears twice", ErrInvalid, p.ID, e.Account)
		}
		if e.Amount == 0 {
			return fmt.Errorf("%w: posting %s: zero amount for %s", ErrInvalid, p.ID, e.Account)
		}
		var ok bool
		if sum, ok = addMicros(sum, e.Amount); !ok {
			return fmt.Errorf("%w: posting %s: amounts overflow", ErrInvalid, p.ID)
		}
		sides = append(sides, side{k, peer, e.Account, e.Amount < 0})
	}
	if sum != 0 {
		return fmt.Errorf("%w: posting %s: entries sum to %s, not zero", ErrInvalid, p.ID, sum)
	}
	if err := p.checkShape(sides); err != nil {
		return fmt.Errorf("%w: posting %s (%s): %v", ErrInvalid, p.ID, p.Kind, err)
	}
	return nil
}

// side is one entry of a posting, classified by Validate.
type side struct {
	kind, peer, acct string
	debit            bool
}

// checkShape enforces which accounts each kind may debit and credit, so
// that, e.g., a settlement can only spend the escrow of the consumer it
// refunds, and no posting moves one consumer's money to another consumer.
func (p *Posting) checkShape(sides []side) error {
	// one returns the only debit (credit) side, which must be of kind.
	one := func(debit bool, what string, kind string) (side, error) {
		var found side
		n := 0
		for _, s := range sides {
			if s.debit == debit {
				found = s
				n++
			}
		}
		if n != 1 || found.kind != kind {
			return side{}, fmt.Errorf("must have exactly one %s entry on a %s account", what, kind)
		}
		return found, nil
	}
	pair := func(fromKind, toKind string, samePeer bool) error {
		d, err := one(true, "debit", fromKind)
		if err != nil {
			return err
		}
		c, err := one(false, "credit", toKind)
		if err != nil {
			return err
		}
		if samePeer && d.peer != c.peer {
			return fmt.Errorf("%s and %s belong to different peers", d.acct, c.acct)
		}
		return nil
	}
	switch p.Kind {
	case KindCredit:
		return pair(External, "consumer", false)
	case KindEscrow:
		return pair("consumer", "escrow", true)
	case KindRelease:
		return pair("escrow", "consumer", true)
	case KindWithdraw:
		return pair("consumer", External, false)
	case KindSettle:
		d, err := one(true, "debit", "escrow")
		if err != nil {
			return err
		}
		for _, c := range sides {
			switch {
			case c.debit:
			case c.kind == "worker" || c.kind == Operator:
			case c.kind == "consumer" && c.peer == d.peer:
			default:
				return fmt.Errorf("may credit only workers, the operator and %s, not %s", ConsumerAccount(d.peer), c.acct)
			}
		}
		return nil
	case KindPayout:
		if _, err := one(false, "credit", External); err != nil {
			return err
		}
		for _, d := range sides {
			if d.debit && d.kind != "worker" {
				return fmt.Errorf("may debit only worker accounts, not %s", d.acct)
			}
		}
		return nil
	case KindAdjust:
		if strings.TrimSpace(p.Memo) == "" {
			return fmt.Errorf("an adjustment needs a memo saying why")
		}
		return nil
	default:
		return fmt.Errorf("unknown kind %q", p.Kind)
	}
}

// sameContent reports whether a and b move the same money: same kind and
// the same entries in any order. Time and memo are descriptive and may
// differ between a posting and its replay (e.g. re-posted after a restart).
func sameContent(a, b *Posting) bool {
	if a.Kind != b.Kind || len(a.Entries) != len(b.Entries) {
		return false
	}
	ea, eb := sortedEntries(a.Entries), sortedEntries(b.Entries)
	return slices.Equal(ea, eb)
}

func sortedEntries(es []Entry) []Entry {
	out := slices.Clone(es)
	slices.SortFunc(out, func(x, y Entry) int { return strings.Compare(x.Account, y.Account) })
	return out
}

// addMicros adds with overflow detection.
func addMicros(a, b protocol.Micros) (protocol.Micros, bool) {
	if (b > 0 && a > math.MaxInt64-b) || (b < 0 && a < math.MinInt64-b) {
		return 0, false
	}
	return a + b, true
}

// CreditPosting builds the posting that moves amount from the outside world
// to consumer's available balance; its ID is "credit/" + ref.
func CreditPosting(ref string, now int64, consumer string, amount protocol.Micros) Posting {
	return Posting{ID: "credit/" + ref, Time: now, Kind: KindCredit,
		Memo:    fmt.Sprintf("credit %s to %s", amount, consumer),
		Entries: []Entry{{External, -amount}, {ConsumerAccount(consumer), amount}}}
}
