package market

import (
	"math"
	"math/bits"

	"github.com/aspen-market/aspen/protocol"
)

// Money is exact. A replica's charge is the agreed price per hour times the
// time its metered work takes at the worker's rated speed:
//
//	charge = price × work / (speed × WorkPerSecond × 3600)   currency units
//
// With price in micro-units per hour, work in standard work units and speed
// in milli standard units (a worker rated s performs s work units per µs),
// that is price × work / (speed × 3600) in picos (10⁻¹² of the currency,
// 10⁻⁶ of a micro-unit). Charges are computed in picos, floored (the error
// is below one pico per charge), and turned into whole micro-units per
// (payer, payee) pair with the sub-micro remainder carried to the pair's
// next charge (Carries), so no amount silently rounds to zero: a thousand
// tiny jobs cost what their work costs, within one micro-unit per pair.

// Picos is an amount in 10⁻¹² of the currency (10⁻⁶ micro-units).
type Picos uint64

// PicosPerMicro is the number of picos in one micro-unit.
const PicosPerMicro = 1_000_000

// ChargePicos is the exact charge, floored to a pico, of running work
// standard work units for a worker rated speed at price per hour:
// floor(price × work / (speed × 3600)), saturating. Zero for a zero or
// negative price, zero work or zero speed.
func ChargePicos(price protocol.Micros, work uint64, speed protocol.Speed) Picos {
	if price <= 0 || work == 0 || speed == 0 {
		return 0
	}
	return Picos(mulDiv(uint64(price), work, uint64(speed)*3600))
}

// BilledMicros is the time, in µs, that work takes at the rated speed:
// floor(work / speed). It is what the consumer pays for, shown for people;
// the charge itself is ChargePicos (exact, not rounded to a µs).
func BilledMicros(work uint64, speed protocol.Speed) int64 {
	if speed == 0 {
		return math.MaxInt64
	}
	return int64(min(work/uint64(speed), math.MaxInt64))
}

// StandardHour is the work speed 1.0 does in an hour.
const StandardHour = 3600 * protocol.WorkPerSecond

// MaxWork is the work budget of a task whose max run time is maxRunMicros:
// what speed 1.0 does in that time (protocol.WorkBudget).
func MaxWork(maxRunMicros int64) uint64 {
	if maxRunMicros <= 0 {
		return 0
	}
	return uint64(maxRunMicros) * uint64(protocol.SpeedUnit) * protocol.WorkPerMicroPerMilli
}

// ReplicaEscrow is the most one replica can cost, in whole micro-units:
// the full work budget of maxRunMicros at maxPrice on the slowest worker
// the task accepts (minSpeed), rounded up, plus one micro-unit for the
// carried remainders: the worker's pay and the operator's cut each take
// less than one micro-unit of earlier carry, so a charge posts less than
// its own share + 2, i.e. at most ⌈share⌉ + 1. It is never zero for a
// positive price.
func ReplicaEscrow(maxPrice protocol.Micros, maxRunMicros int64, minSpeed protocol.Speed) protocol.Micros {
	if maxPrice <= 0 || maxRunMicros <= 0 || minSpeed == 0 {
		return 0
	}
	// ⌈price × work / (speed × 3600 × 10⁶)⌉ micro-units, exact in 128 bits.
	hi, lo := bits.Mul64(uint64(maxPrice), MaxWork(maxRunMicros))
	d := uint64(minSpeed) * 3600 * PicosPerMicro
	if hi >= d {
		return math.MaxInt64
	}
	q, rem := bits.Div64(hi, lo, d)
	if rem != 0 {
		q++
	}
	if q >= math.MaxInt64-1 {
		return math.MaxInt64
	}
	return protocol.Micros(q + 1)
}

// Carries holds the sub-micro remainders (picos, 0 ≤ c < PicosPerMicro)
// of settled charges per (payer, payee) pair, keyed by CarryKey. It is
// plain data: the verifier persists the pairs a settlement changed with the
// settlement itself. The zero value (nil) starts every pair at 0; Settle
// needs a non-nil map.
type Carries map[string]uint64

// CarryKey names the pair of consumer and payee (a worker, or
// OperatorAccount for the operator's cut).
func CarryKey(consumer, payee string) string { return consumer + "\x00" + payee }

// OperatorAccount is the payee name of the operator's cut in Carries.
const OperatorAccount = "operator"

// Take adds p to the pair's carry and returns the whole micro-units now
// due, keeping the rest: summed over any sequence of charges, the amounts
// returned equal floor(Σp / 10⁶) exactly.
func (c Carries) Take(key string, p Picos) protocol.Micros {
	total, carry := bits.Add64(c[key], uint64(p), 0)
	if carry != 0 {
		total = math.MaxUint64
	}
	due := total / PicosPerMicro
	if rest := total % PicosPerMicro; rest != 0 {
		c[key] = rest
	} else {
		delete(c, key)
	}
	return protocol.Micros(min(due, math.MaxInt64))
}
