package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

// Config configures a Ledger. The zero value is valid.
type Config struct {
	// Logger receives the ledger's log lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock used by convenience operations that stamp postings
	// (Credit); nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config { return Config{} }

// Validate reports a problem with c. Every field is optional.
func (c Config) Validate() error { return nil }

// Ledger is the double-entry ledger over a store. It keeps the balances in
// memory (loaded by Open, shared by every Ledger of the same store) and has
// no background work, so it needs no Close; it is safe for concurrent use.
// It must be the only writer of its namespaces in the store.
type Ledger struct {
	st  *store.Store
	b   *book
	log *slog.Logger
	now func() time.Time
}

// Open returns the ledger kept in st, loading its balances (the last
// checkpoint and the journal entries after it).
func Open(st *store.Store, cfg Config) (*Ledger, error) {
	if st == nil {
		return nil, fmt.Errorf("%w: nil store", ErrInvalid)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b, err := bookOf(st)
	if err != nil {
		return nil, fmt.Errorf("ledger: open: %w", err)
	}
	l := &Ledger{st: st, b: b, log: cfg.Logger, now: cfg.Now}
	if l.log == nil {
		l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l.log = l.log.With("component", "ledger")
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

// Post applies p durably: it returns once the posting and the balances it
// changes are synced (group-committed with concurrent postings). It is
// idempotent on p.ID: posting an ID already in the journal with the same
// kind and entries returns applied=false and changes nothing; with
// different content it fails with ErrConflict. A posting that would make a
// non-negative account negative fails with ErrInsufficientFunds and changes
// nothing.
func (l *Ledger) Post(ctx context.Context, p Posting) (applied bool, err error) {
	pr, err := prepare(&p)
	if err != nil {
		return false, err
	}
	var last *store.Tx
	err = l.st.Durable(ctx, func(tx *store.Tx) error {
		last = tx
		var err error
		applied, err = l.b.apply(tx, &pr)
		return err
	})
	if err != nil {
		return false, err
	}
	l.b.committed(last)
	if applied {
		l.log.Debug("posted", "id", p.ID, "kind", p.Kind)
	}
	return applied, nil
}

// PostBatch applies ps in order, atomically: either every posting is
// applied (or was already, by ID) or none is and the first error is
// returned. Durable like Post.
func (l *Ledger) PostBatch(ctx context.Context, ps []Posting) error {
	if len(ps) == 0 {
		return nil
	}
	own := make([]prepared, len(ps))
	for i := range ps {
		var err error
		if own[i], err = prepare(&ps[i]); err != nil {
			return err
		}
	}
	var last *store.Tx
	err := l.st.Durable(ctx, func(tx *store.Tx) error {
		last = tx
		for i := range own {
			if _, err := l.b.apply(tx, &own[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		l.b.committed(last)
	}
	return err
}

// prepared is a validated posting with its encoding, made by the caller
// before the committer sees it.
type prepared struct {
	p    Posting
	id   []byte
	body []byte
}

func prepare(p *Posting) (prepared, error) {
	if err := p.Validate(); err != nil {
		return prepared{}, err
	}
	pr := prepared{p: *p, id: []byte(p.ID)}
	pr.p.Entries = cloneEntries(p.Entries)
	pr.body = encodeBody(&pr.p)
	return pr, nil
}

func cloneEntries(es []Entry) []Entry { return append([]Entry(nil), es...) }

// apply records the prepared posting in tx, on the store's committer. All
// checks happen before the first write, so a refused posting leaves tx
// untouched.
func (b *book) apply(tx *store.Tx, pr *prepared) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin(tx); err != nil {
		return false, err
	}
	return b.applyLocked(tx, pr)
}

func (b *book) applyLocked(tx *store.Tx, pr *prepared) (bool, error) {
	p := &pr.p
	switch raw, err := tx.Get(nsID, pr.id); {
	case err == nil:
		seq, err := decodeU64(raw, "posting index")
		if err != nil {
			return false, err
		}
		old, err := readJournal(tx, seq)
		if err != nil {
			return false, err
		}
		if !sameContent(&old.Posting, p) {
			return false, fmt.Errorf("%w: %s is already journal entry %d with different content", ErrConflict, p.ID, seq)
		}
		return false, nil
	case !errors.Is(err, store.ErrNotFound):
		return false, err
	}
	seq := b.pseq + 1
	prev := make([]uint64, len(p.Entries))
	states := make([]accountState, len(p.Entries))
	for i, e := range p.Entries {
		st := b.view(e.Account)
		nb, ok := addMicros(st.Balance, e.Amount)
		if !ok {
			return false, fmt.Errorf("%w: posting %s overflows %s", ErrInvalid, p.ID, e.Account)
		}
		if nb < 0 && mustStayNonNegative(e.Account) {
			return false, fmt.Errorf("%w: %s has %s, posting %s needs %s", ErrInsufficientFunds, e.Account, st.Balance, p.ID, -e.Amount)
		}
		prev[i] = st.Last
		states[i] = accountState{Balance: nb, Last: seq}
	}
	sk := seqKey(seq)
	if err := tx.Put(nsJournal, sk, encodeRecord(seq, prev, pr.body)); err != nil {
		return false, err
	}
	if err := tx.Put(nsID, pr.id, sk); err != nil {
		return false, err
	}
	for i, e := range p.Entries {
		b.set(e.Account, states[i])
	}
	b.pseq, b.pid = seq, pr.id
	return true, b.maybeCheckpoint(tx)
}

func readJournal(tx *store.Tx, seq uint64) (journalRecord, error) {
	raw, err := tx.Get(nsJournal, seqKey(seq))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return journalRecord{}, fmt.Errorf("%w: journal entry %d is missing", ErrCorrupt, seq)
		}
		return journalRecord{}, err
	}
	return decodeJournal(seq, raw)
}

// Credit moves amount from the outside world to consumer's available
// balance (consumer is a peer ID). ref identifies the payment; the posting
// ID is "credit/" + ref, so crediting the same ref twice credits once.
func (l *Ledger) Credit(ctx context.Context, consumer string, amount protocol.Micros, ref string) (applied bool, err error) {
	if amount <= 0 {
		return false, fmt.Errorf("%w: credit amount %s must be positive", ErrInvalid, amount)
	}
	return l.Post(ctx, CreditPosting(ref, l.now().UnixMilli(), consumer, amount))
}

// Balance returns the balance of acct (0 for an account never used).
func (l *Ledger) Balance(acct string) (protocol.Micros, error) {
	if _, _, err := AccountKind(acct); err != nil {
		return 0, err
	}
	return l.b.state(acct).Balance, nil
}

// AccountBalance is one account's balance.
type AccountBalance struct {
	Account string          `json:"account"`
	Balance protocol.Micros `json:"balance"`
}

// Balances returns every account ever used, sorted by account.
func (l *Ledger) Balances() ([]AccountBalance, error) {
	l.b.mu.Lock()
	out := make([]AccountBalance, 0, len(l.b.acct))
	for a, st := range l.b.acct {
		out = append(out, AccountBalance{Account: a, Balance: st.Balance})
	}
	l.b.mu.Unlock()
	slices.SortFunc(out, func(x, y AccountBalance) int { return strings.Compare(x.Account, y.Account) })
	return out, nil
}

// Total returns the sum of all balances, external included. It is zero
// unless the ledger is corrupt.
func (l *Ledger) Total() (protocol.Micros, error) {
	bs, err := l.Balances()
	if err != nil {
		return 0, err
	}
	var sum protocol.Micros
	for _, b := range bs {
		var ok bool
		if sum, ok = addMicros(sum, b.Balance); !ok {
			return 0, fmt.Errorf("%w: balances overflow", ErrInconsistent)
		}
	}
	return sum, nil
}

// JournalFilter selects journal entries.
type JournalFilter struct {
	// Account restricts to postings with an entry on this account.
	Account string
	// After and Before bound the sequence numbers (both exclusive; Before
	// 0 means no upper bound).
	After, Before uint64
	// Limit caps the number of entries returned; 0 means no limit.
	Limit int
	// Newest returns entries in descending order, starting from the
	// newest (below Before).
	Newest bool
}

// Journal returns the journal entries selected by f, in sequence order
// (descending when f.Newest). With an account, it follows the account's
// chain backwards from its newest entry, so its cost is proportional to the
// account's entries above f.After.
func (l *Ledger) Journal(f JournalFilter) ([]JournalEntry, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrInvalid)
	}
	if f.Account != "" {
		if _, _, err := AccountKind(f.Account); err != nil {
			return nil, err
		}
	}
	inRange := func(seq uint64) bool { return seq > f.After && (f.Before == 0 || seq < f.Before) }
	var newest uint64
	if f.Account != "" {
		// Read before the snapshot opens, so the snapshot holds it.
		newest = l.b.state(f.Account).Last
	}
	var out []JournalEntry
	err := l.st.View(func(tx *store.Tx) error {
		if f.Account != "" {
			return journalOfAccount(tx, f, newest, &out)
		}
		opt := store.ScanOptions{Reverse: f.Newest}
		switch {
		case f.Newest && f.Before > 0:
			opt.Start = seqKey(f.Before - 1)
		case !f.Newest:
			opt.Start = seqKey(f.After + 1)
		}
		return tx.ScanWith(nsJournal, opt, func(k, v []byte) error {
			seq, err := decodeU64(k, "journal key")
			if err != nil {
				return err
			}
			if !inRange(seq) {
				return store.ErrStop
			}
			r, err := decodeJournal(seq, v)
			if err != nil {
				return err
			}
			out = append(out, r.JournalEntry)
			if f.Limit > 0 && len(out) >= f.Limit {
				return store.ErrStop
			}
			return nil
		})
	})
	return out, err
}

// journalOfAccount walks f.Account's chain from its newest entry down to
// f.After.
func journalOfAccount(tx *store.Tx, f JournalFilter, newest uint64, out *[]JournalEntry) error {
	var got []JournalEntry
	for seq := newest; seq > f.After; {
		r, err := readJournal(tx, seq)
		if err != nil {
			return err
		}
		prev, ok := r.prevFor(f.Account)
		if !ok {
			return fmt.Errorf("%w: journal %d is on %s's chain but has no entry for it", ErrCorrupt, seq, f.Account)
		}
		if f.Before == 0 || seq < f.Before {
			got = append(got, r.JournalEntry)
			if f.Newest && f.Limit > 0 && len(got) >= f.Limit {
				break
			}
		}
		seq = prev
	}
	if !f.Newest {
		slices.Reverse(got)
		if f.Limit > 0 && len(got) > f.Limit {
			got = got[:f.Limit]
		}
	}
	*out = got
	return nil
}

// Lookup returns the journal entry of posting id, or ErrNotFound.
func (l *Ledger) Lookup(id string) (JournalEntry, error) {
	var e JournalEntry
	err := l.st.View(func(tx *store.Tx) error {
		raw, err := tx.Get(nsID, []byte(id))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: posting %s", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		seq, err := decodeU64(raw, "posting index")
		if err != nil {
			return err
		}
		r, err := readJournal(tx, seq)
		e = r.JournalEntry
		return err
	})
	return e, err
}

// Check replays the whole journal from one snapshot and compares it with
// the stored state and the balances in memory: every record decodes and
// balances, the ID index and the per-account chains agree with it, the
// stored balance records equal the replay up to their checkpoint, the
// balances in memory equal the replay up to the newest posting they
// include, no non-negative account is negative, the total is zero, and
// every payout batch matches its posting. It returns nil or an error
// wrapping ErrInconsistent (or ErrCorrupt) describing the first problems
// found.
func (l *Ledger) Check() error {
	// Taken before the snapshot opens: everything in memory was committed
	// before, so the snapshot holds it.
	mem, memSeq := l.b.snapshot()
	return l.st.View(func(tx *store.Tx) error {
		var problems []string
		bad := func(format string, a ...any) {
			if len(problems) < 20 {
				problems = append(problems, fmt.Sprintf(format, a...))
			}
		}
		ckpt, err := storedCheckpoint(tx)
		if err != nil {
			return err
		}
		replayed := map[string]accountState{}
		atCkpt, atMem := map[string]accountState{}, map[string]accountState{}
		byID := map[string]uint64{}
		var last uint64
		err = tx.Scan(nsJournal, nil, func(k, v []byte) error {
			seq, err := decodeU64(k, "journal key")
			if err != nil {
				return err
			}
			if seq != last+1 {
				bad("journal jumps from %d to %d", last, seq)
			}
			last = seq
			r, err := decodeJournal(seq, v)
			if err != nil {
				return err
			}
			if prev, dup := byID[r.ID]; dup {
				bad("posting %s appears twice (journal %d and %d)", r.ID, prev, seq)
			}
			byID[r.ID] = seq
			for i, en := range r.Entries {
				st := replayed[en.Account]
				if r.Prev[i] != st.Last {
					bad("journal %d links %s back to %d, its previous entry is %d", seq, en.Account, r.Prev[i], st.Last)
				}
				nb, ok := addMicros(st.Balance, en.Amount)
				if !ok {
					bad("replay overflows %s at journal %d", en.Account, seq)
				}
				replayed[en.Account] = accountState{Balance: nb, Last: seq}
			}
			if seq == ckpt {
				atCkpt = maps.Clone(replayed)
			}
			if seq == memSeq {
				atMem = maps.Clone(replayed)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if ckpt > last {
			bad("the balance checkpoint is at journal %d, the last entry is %d", ckpt, last)
		}
		if memSeq > last {
			bad("the balances in memory include journal %d, the last entry is %d", memSeq, last)
		}
		ids := 0
		if err := tx.Scan(nsID, nil, func(k, v []byte) error {
			ids++
			seq, err := decodeU64(v, "posting index")
			if err != nil {
				return err
			}
			if byID[string(k)] != seq {
				bad("index says posting %s is journal %d, journal says %d", k, seq, byID[string(k)])
			}
			return nil
		}); err != nil {
			return err
		}
		if ids != len(byID) {
			bad("%d postings indexed, %d in the journal", ids, len(byID))
		}
		stored := map[string]accountState{}
		if err := tx.Scan(nsBalance, nil, func(k, v []byte) error {
			st, err := decodeAccount(v)
			if err != nil {
				return err
			}
			stored[string(k)] = st
			return nil
		}); err != nil {
			return err
		}
		compare := func(what string, got, want map[string]accountState) {
			var total protocol.Micros
			for acct, st := range got {
				if w := want[acct]; st != w {
					bad("%s: %s balance %s (newest entry %d), journal replay %s (newest entry %d)",
						acct, what, st.Balance, st.Last, w.Balance, w.Last)
				}
				if st.Balance < 0 && mustStayNonNegative(acct) {
					bad("%s is negative in the %s balances: %s", acct, what, st.Balance)
				}
				total += st.Balance
			}
			for acct, w := range want {
				if _, ok := got[acct]; !ok {
					bad("%s: no %s balance, journal replay %s", acct, what, w.Balance)
				}
			}
			if total != 0 {
				bad("%s balances sum to %s, not zero", what, total)
			}
		}
		for acct, st := range replayed {
			if st.Balance < 0 && mustStayNonNegative(acct) {
				bad("%s is negative after journal %d: %s", acct, last, st.Balance)
			}
		}
		compare("stored", stored, atCkpt)
		compare("in-memory", mem, atMem)
		if err := tx.Scan(nsBatch, nil, func(k, v []byte) error {
			b, err := decodeBatch(v)
			if err != nil {
				return err
			}
			if b.ID != string(k) {
				bad("batch stored under %q says it is %q", k, b.ID)
			}
			if len(b.Lines) == 0 {
				return nil
			}
			seq, ok := byID[payoutID(b.ID)]
			if !ok {
				bad("batch %s has no payout posting", b.ID)
				return nil
			}
			r, err := readJournal(tx, seq)
			if err != nil {
				return err
			}
			if want := b.posting(); !sameContent(&r.Posting, &want) {
				bad("batch %s does not match its payout posting", b.ID)
			}
			return nil
		}); err != nil {
			return err
		}
		if len(problems) > 0 {
			return fmt.Errorf("%w: %s", ErrInconsistent, strings.Join(problems, "; "))
		}
		return nil
	})
}
