package market

import (
	"fmt"

	"github.com/aspen-market/aspen/protocol"
)

// Payout is what one paid replica earns.
type Payout struct {
	Worker       string          `json:"worker"`
	Price        protocol.Micros `json:"price"`        // per hour
	Speed        protocol.Speed  `json:"speed"`        // rated at assignment
	Work         uint64          `json:"metered_work"` // metered
	BilledMicros int64           `json:"billed_micros"`
	// Exact is ChargePicos(Price, Work, Speed): the exact charge in picos.
	Exact  Picos           `json:"exact"`
	Charge protocol.Micros `json:"charge"` // Cut + Pay: billed to the consumer now
	Cut    protocol.Micros `json:"cut"`    // to the operator (with its carry)
	Pay    protocol.Micros `json:"pay"`    // to the worker (with its carry)
}

// Settlement is the money of a decided task. It always holds
// Escrowed == Charged + Refund and Charged == Σ Pay + OperatorCut.
type Settlement struct {
	Consumer    string          `json:"consumer"`
	Group       string          `json:"group"`
	Index       int             `json:"index"`
	Decision    Decision        `json:"decision"`
	Escrowed    protocol.Micros `json:"escrowed"`
	Charged     protocol.Micros `json:"charged"`
	OperatorCut protocol.Micros `json:"operator_cut"`
	Refund      protocol.Micros `json:"refund"`
	Payouts     []Payout        `json:"payouts,omitempty"`
	// Carries are the (payer, payee) carries after this settlement, for
	// the pairs it touched (the caller persists them with it).
	Carries map[string]uint64 `json:"carries,omitempty"`
}

// Settle turns the task's final decision into exact amounts and marks the
// task settled. Each paid replica's exact charge is
// ChargePicos(price, work, rated speed); the operator's share is
// floor(charge × cut / 10⁶) picos and the worker's the rest. Each share is
// added to the carry of its (consumer, payee) pair in carries and the
// whole micro-units due are posted (Carries.Take), so nothing rounds away:
// over any number of tasks each pair's postings are the exact sum, floored,
// to the micro-unit. Zero shares post nothing. The consumer gets Escrowed −
// Σ charges back. Verifier runs are never billed. It refuses an undecided
// task (ErrNotFinal) and a second settlement (ErrAlreadySettled).
func (t *Task) Settle(carries Carries) (Settlement, error) {
	if t.Settled {
		return Settlement{}, ErrAlreadySettled
	}
	d := t.Decide()
	if !d.Final() {
		return Settlement{}, fmt.Errorf("%w: %s (%s)", ErrNotFinal, d.Kind, d.Reason)
	}
	if carries == nil {
		return Settlement{}, fmt.Errorf("%w: nil carries", ErrInvalidConfig)
	}
	s := Settlement{Consumer: t.Consumer, Group: t.Group, Index: t.Index, Decision: d, Escrowed: t.Escrowed}
	// Work on a copy so a refused settlement changes no carry.
	touched := map[string]uint64{}
	take := func(payee string, p Picos) protocol.Micros {
		key := CarryKey(t.Consumer, payee)
		c := Carries{key: carries[key]}
		if v, ok := touched[key]; ok {
			c[key] = v
		}
		due := c.Take(key, p)
		touched[key] = c[key]
		return due
	}
	for i, v := range d.Verdicts {
		if v.Outcome != OutcomePaid {
			continue
		}
		r := t.Runs[i]
		exact := ChargePicos(r.Price, v.Work, r.Speed)
		cutP := Picos(mulDiv(uint64(exact), uint64(t.Terms.OperatorCutPPM), PPM))
		pay := take(r.Worker, exact-cutP)
		cut := take(OperatorAccount, cutP)
		s.Payouts = append(s.Payouts, Payout{
			Worker: r.Worker, Price: r.Price, Speed: r.Speed, Work: v.Work, BilledMicros: v.BilledMicros,
			Exact: exact, Charge: pay + cut, Cut: cut, Pay: pay,
		})
		s.Charged += pay + cut
		s.OperatorCut += cut
	}
	if s.Charged > s.Escrowed || s.Charged < 0 {
		// Unreachable: each charge ≤ one replica maximum and paid replicas
		// ≤ escrow slots (see Assign and ReplicaEscrow).
		return Settlement{}, fmt.Errorf("%w: charged %s exceeds escrow %s", ErrOverflow, s.Charged, s.Escrowed)
	}
	s.Refund = s.Escrowed - s.Charged
	for k, v := range touched {
		if v == 0 {
			delete(carries, k)
		} else {
			carries[k] = v
		}
	}
	if len(touched) > 0 {
		s.Carries = touched
	}
	t.Settled = true
	return s, nil
}
