package market

import (
	"fmt"

	"github.com/aspen-market/aspen/protocol"
)

// Payout is what one paid replica earns.
type Payout struct {
	Worker       string          `json:"worker"`
	Price        protocol.Micros `json:"price"` // per hour
	BilledMicros int64           `json:"billed_micros"`
	Charge       protocol.Micros `json:"charge"` // Charge(Price, BilledMicros), billed to the consumer
	Cut          protocol.Micros `json:"cut"`    // floor(Charge × cut ppm / 1e6), to the operator
	Pay          protocol.Micros `json:"pay"`    // Charge − Cut, to the worker
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
}

// Settle turns the task's final decision into exact amounts and marks the
// task settled. Each paid replica is charged Charge(price, billed); the
// operator takes floor(charge × cut / 1e6) of it and the worker the rest;
// the consumer gets Escrowed − Σ charges back. Verifier runs are never
// billed. It refuses an undecided task (ErrNotFinal) and a second
// settlement (ErrAlreadySettled).
func (t *Task) Settle() (Settlement, error) {
	if t.Settled {
		return Settlement{}, ErrAlreadySettled
	}
	d := t.Decide()
	if !d.Final() {
		return Settlement{}, fmt.Errorf("%w: %s (%s)", ErrNotFinal, d.Kind, d.Reason)
	}
	s := Settlement{Consumer: t.Consumer, Group: t.Group, Index: t.Index, Decision: d, Escrowed: t.Escrowed}
	for i, v := range d.Verdicts {
		if v.Outcome != OutcomePaid {
			continue
		}
		r := t.Runs[i]
		charge := Charge(r.Price, v.BilledMicros)
		cut := protocol.Micros(mulDiv(uint64(charge), uint64(t.Terms.OperatorCutPPM), PPM))
		s.Payouts = append(s.Payouts, Payout{
			Worker: r.Worker, Price: r.Price, BilledMicros: v.BilledMicros,
			Charge: charge, Cut: cut, Pay: charge - cut,
		})
		s.Charged += charge
		s.OperatorCut += cut
	}
	if s.Charged > s.Escrowed || s.Charged < 0 {
		// Unreachable: each charge ≤ one replica maximum and paid replicas
		// ≤ escrow slots (see Assign).
		return Settlement{}, fmt.Errorf("%w: charged %s exceeds escrow %s", ErrOverflow, s.Charged, s.Escrowed)
	}
	s.Refund = s.Escrowed - s.Charged
	t.Settled = true
	return s, nil
}
