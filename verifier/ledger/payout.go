package ledger

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

// Batch is a closed payout batch: every worker balance at or above the
// threshold at closing time, moved to the outside world by one posting
// (ID "payout/<batch ID>").
type Batch struct {
	ID        string          `json:"id"`
	Time      int64           `json:"time"` // unix ms
	Threshold protocol.Micros `json:"threshold"`
	Lines     []PayoutLine    `json:"lines"`
	Total     protocol.Micros `json:"total"`
}

// PayoutLine is one worker's payment in a batch.
type PayoutLine struct {
	Worker string          `json:"worker"` // peer ID
	Amount protocol.Micros `json:"amount"`
}

func payoutID(batchID string) string { return "payout/" + batchID }

// posting is the journal posting that pays b out.
func (b *Batch) posting() Posting {
	p := Posting{ID: payoutID(b.ID), Time: b.Time, Kind: KindPayout,
		Memo: fmt.Sprintf("payout batch %s: %d workers, threshold %s", b.ID, len(b.Lines), b.Threshold)}
	for _, ln := range b.Lines {
		p.Entries = append(p.Entries, Entry{WorkerAccount(ln.Worker), -ln.Amount})
	}
	p.Entries = append(p.Entries, Entry{External, b.Total})
	return p
}

// check verifies a batch's internal arithmetic.
func (b *Batch) check() error {
	if err := checkText("batch ID", b.ID, MaxIDLen-len("payout/"), false); err != nil {
		return err
	}
	if b.Threshold <= 0 {
		return fmt.Errorf("threshold %s is not positive", b.Threshold)
	}
	var sum protocol.Micros
	for i, ln := range b.Lines {
		if err := checkPeer(ln.Worker); err != nil {
			return err
		}
		if ln.Amount < b.Threshold {
			return fmt.Errorf("line %s pays %s, below the threshold", ln.Worker, ln.Amount)
		}
		if i > 0 && b.Lines[i-1].Worker >= ln.Worker {
			return fmt.Errorf("lines not sorted by worker")
		}
		var ok bool
		if sum, ok = addMicros(sum, ln.Amount); !ok {
			return fmt.Errorf("total overflows")
		}
	}
	if sum != b.Total {
		return fmt.Errorf("lines sum to %s, total says %s", sum, b.Total)
	}
	return nil
}

// Payout closes payout batch batchID at time now (unix ms): every worker
// whose balance is at least threshold is paid its whole balance, moved to
// the external account by one durable posting, and the batch is recorded.
// Closing a batch ID that is already closed returns the recorded batch and
// changes nothing. A batch with no worker above the threshold is recorded
// with no lines.
func (l *Ledger) Payout(ctx context.Context, threshold protocol.Micros, batchID string, now int64) (Batch, error) {
	if threshold <= 0 {
		return Batch{}, fmt.Errorf("%w: payout threshold %s must be positive", ErrInvalid, threshold)
	}
	if err := checkText("batch ID", batchID, MaxIDLen-len("payout/"), false); err != nil {
		return Batch{}, err
	}
	if now < 0 {
		return Batch{}, fmt.Errorf("%w: negative time", ErrInvalid)
	}
	var out Batch
	var last *store.Tx
	err := l.st.Durable(ctx, func(tx *store.Tx) error {
		last = tx
		raw, err := tx.Get(nsBatch, []byte(batchID))
		if err == nil {
			out, err = decodeBatch(raw)
			return err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		l.b.mu.Lock()
		defer l.b.mu.Unlock()
		if err := l.b.begin(tx); err != nil {
			return err
		}
		b := Batch{ID: batchID, Time: now, Threshold: threshold, Lines: []PayoutLine{}}
		for _, acct := range l.b.accounts(workerPrefix) {
			bal := l.b.view(acct).Balance
			if bal >= threshold {
				b.Lines = append(b.Lines, PayoutLine{Worker: strings.TrimPrefix(acct, workerPrefix), Amount: bal})
				var ok bool
				if b.Total, ok = addMicros(b.Total, bal); !ok {
					return fmt.Errorf("%w: payout total overflows", ErrInvalid)
				}
			}
		}
		if len(b.Lines) > MaxEntries-1 {
			return fmt.Errorf("%w: %d workers above the threshold, at most %d per batch", ErrInvalid, len(b.Lines), MaxEntries-1)
		}
		if len(b.Lines) > 0 {
			p := b.posting()
			pr, err := prepare(&p)
			if err != nil {
				return err
			}
			if _, err := l.b.applyLocked(tx, &pr); err != nil {
				return err
			}
		}
		out = b
		return tx.Put(nsBatch, []byte(batchID), encodeBatch(&b))
	})
	if err != nil {
		return Batch{}, err
	}
	l.b.committed(last)
	l.log.Info("payout batch closed", "batch", out.ID, "workers", len(out.Lines), "total", out.Total.String())
	return out, nil
}

// Batches returns every recorded payout batch, oldest first.
func (l *Ledger) Batches() ([]Batch, error) {
	var out []Batch
	err := l.st.Scan(nsBatch, nil, func(_, v []byte) error {
		b, err := decodeBatch(v)
		if err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	slices.SortFunc(out, func(a, b Batch) int {
		if c := cmp.Compare(a.Time, b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

// Batch returns payout batch id, or ErrNotFound.
func (l *Ledger) Batch(id string) (Batch, error) {
	raw, err := l.st.Get(nsBatch, []byte(id))
	if errors.Is(err, store.ErrNotFound) {
		return Batch{}, fmt.Errorf("%w: payout batch %q", ErrNotFound, id)
	}
	if err != nil {
		return Batch{}, err
	}
	return decodeBatch(raw)
}

func utcTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// WriteBatchCSV writes b as CSV for a payment system: a header, then one
// row per worker: batch, time (RFC 3339 UTC), worker, amount (decimal
// currency units), amount_micros.
func WriteBatchCSV(w io.Writer, b Batch) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"batch", "time", "worker", "amount", "amount_micros"})
	for _, ln := range b.Lines {
		_ = cw.Write([]string{b.ID, utcTime(b.Time), ln.Worker, ln.Amount.String(), strconv.FormatInt(int64(ln.Amount), 10)})
	}
	cw.Flush()
	return cw.Error()
}

// batchExport is the JSON export form: amounts as decimal strings (exact)
// and as integer micro-units.
type batchExport struct {
	ID              string       `json:"id"`
	Time            string       `json:"time"`
	TimeMillis      int64        `json:"time_ms"`
	Threshold       string       `json:"threshold"`
	Total           string       `json:"total"`
	TotalMicros     int64        `json:"total_micros"`
	Lines           []lineExport `json:"lines"`
	ThresholdMicros int64        `json:"threshold_micros"`
}

type lineExport struct {
	Worker       string `json:"worker"`
	Amount       string `json:"amount"`
	AmountMicros int64  `json:"amount_micros"`
}

// WriteBatchJSON writes b as an indented JSON document with exact decimal
// amounts (and the same amounts in micro-units).
func WriteBatchJSON(w io.Writer, b Batch) error {
	ex := batchExport{ID: b.ID, Time: utcTime(b.Time), TimeMillis: b.Time,
		Threshold: b.Threshold.String(), ThresholdMicros: int64(b.Threshold),
		Total: b.Total.String(), TotalMicros: int64(b.Total), Lines: []lineExport{}}
	for _, ln := range b.Lines {
		ex.Lines = append(ex.Lines, lineExport{ln.Worker, ln.Amount.String(), int64(ln.Amount)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(ex)
}
