package verifier

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// handleStatement answers a peer's request for its own signed account
// statement.
func (v *Verifier) handleStatement(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	var req protocol.StatementRequest
	if err := env.Decode(&req); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	if env.Signer != from || req.Peer != from {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "statement requested by %s for %s", env.Signer, req.Peer)
	}
	if d := time.UnixMilli(req.Time).Sub(v.now()); d > protocol.MaxClockSkew || -d > protocol.MaxClockSkew {
		return nil, p2p.Refuse(protocol.AckExpired, "request time is %v off the verifier's clock", d.Round(time.Second))
	}
	st, err := v.Statement(from)
	if err != nil {
		return nil, p2p.Refuse(protocol.AckInternal, "%v", err)
	}
	st.Nonce = req.Nonce
	return st, nil
}

// Statement computes a peer's account statement: as a consumer its
// available balance, escrow and total spent; as a worker its earnings,
// pending balance, payouts, strikes and rating.
func (v *Verifier) Statement(p peer.ID) (*protocol.Statement, error) {
	id := p.String()
	st := &protocol.Statement{Peer: p, Issued: v.nowMs()}
	var err error
	if st.Balance, err = v.led.Balance(acctConsumer(id)); err != nil {
		return nil, fmt.Errorf("verifier: statement: %w", err)
	}
	if st.Escrow, err = v.led.Balance(acctEscrow(id)); err != nil {
		return nil, fmt.Errorf("verifier: statement: %w", err)
	}
	if st.Pending, err = v.led.Balance(acctWorker(id)); err != nil {
		return nil, fmt.Errorf("verifier: statement: %w", err)
	}
	// Spent: everything that left the consumer's accounts for good, i.e.
	// credits - withdrawals - balance - escrow.
	var in protocol.Micros
	js, err := v.led.Journal(ledger.JournalFilter{Account: acctConsumer(id)})
	if err != nil {
		return nil, fmt.Errorf("verifier: statement: %w", err)
	}
	for _, e := range js {
		if e.Kind != ledger.KindCredit && e.Kind != ledger.KindWithdraw && e.Kind != ledger.KindAdjust {
			continue
		}
		for _, en := range e.Entries {
			if en.Account == acctConsumer(id) {
				in += en.Amount
			}
		}
	}
	st.Spent = max(in-st.Balance-st.Escrow, 0)
	js, err = v.led.Journal(ledger.JournalFilter{Account: acctWorker(id)})
	if err != nil {
		return nil, fmt.Errorf("verifier: statement: %w", err)
	}
	for _, e := range js {
		for _, en := range e.Entries {
			if en.Account != acctWorker(id) {
				continue
			}
			if en.Amount > 0 {
				st.Earned += en.Amount
			} else if e.Kind == ledger.KindPayout {
				st.PaidOut -= en.Amount
			}
		}
	}
	v.mu.Lock()
	if ws := v.workers[p]; ws != nil {
		st.Strikes = uint32(ws.rec.Rep.Strikes)
		st.Rating = v.ratingFor(ws)
	}
	v.mu.Unlock()
	return st, nil
}

// Credit adds amount to consumer p's available balance (a payment
// received). ref makes it idempotent; empty generates a fresh one.
func (v *Verifier) Credit(ctx context.Context, p peer.ID, amount protocol.Micros, ref ...string) error {
	if amount <= 0 {
		return fmt.Errorf("%w: credit amount %s must be positive", ErrBadRequest, amount)
	}
	r := protocol.NewID().String()
	if len(ref) > 0 && ref[0] != "" {
		r = ref[0]
	}
	if _, err := v.led.Post(ctx, ledger.CreditPosting(r, v.nowMs(), p.String(), amount)); err != nil {
		return fmt.Errorf("verifier: credit: %w", err)
	}
	v.log.Info("credit", "consumer", p.String(), "amount", amount.String(), "ref", r)
	kick(v.kickSched)
	return nil
}

// Accounts returns every ledger account's balance.
func (v *Verifier) Accounts() ([]ledger.AccountBalance, error) { return v.led.Balances() }

// Journal returns ledger postings (all, or those touching an account).
func (v *Verifier) Journal(f ledger.JournalFilter) ([]ledger.JournalEntry, error) {
	return v.led.Journal(f)
}

// Payout closes a payout batch: every worker balance at or above threshold
// is paid out. An empty batchID names it after the time.
func (v *Verifier) Payout(ctx context.Context, threshold protocol.Micros, batchID string) (ledger.Batch, error) {
	now := v.now()
	if batchID == "" {
		batchID = now.UTC().Format("20060102T150405.000Z")
	}
	b, err := v.led.Payout(ctx, threshold, batchID, now.UnixMilli())
	if err != nil {
		return ledger.Batch{}, fmt.Errorf("verifier: payout: %w", err)
	}
	v.log.Info("payout batch", "batch", b.ID, "workers", len(b.Lines), "total", b.Total.String(), "threshold", threshold.String())
	return b, nil
}
