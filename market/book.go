package market

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/aspen-market/aspen/protocol"
)

// Rand is the injected randomness source: *math/rand/v2.Rand satisfies it.
// For secret spot checks and unpredictable pairing the verifier should seed
// it from crypto/rand (e.g. rand.New(rand.NewChaCha8(seed))).
type Rand interface {
	// Uint64N returns a uniform value in [0, n); n > 0.
	Uint64N(n uint64) uint64
}

// Offer is a worker's standing offer: its rated speed (set by the
// verifier's benchmark), its asking price per hour and how many replicas it
// will run at once.
type Offer struct {
	Worker string `json:"worker"`
	// Owner groups workers by owner or address; selection prefers replicas
	// on different owners. Empty means "an owner of its own".
	Owner    string          `json:"owner,omitempty"`
	MinPrice protocol.Micros `json:"min_price"` // asking price per hour
	Speed    protocol.Speed  `json:"speed"`     // rated speed
	Capacity int             `json:"capacity"`  // concurrent replicas
	Expires  int64           `json:"expires"`   // unix ms; 0 = never
}

// Validate checks the offer's fields, wrapping ErrInvalidOffer.
func (o Offer) Validate() error {
	switch {
	case o.Worker == "":
		return fmt.Errorf("%w: empty worker", ErrInvalidOffer)
	case o.MinPrice < 0:
		return fmt.Errorf("%w: worker %s asks a negative price %d", ErrInvalidOffer, o.Worker, o.MinPrice)
	case o.Speed == 0:
		return fmt.Errorf("%w: worker %s has no rated speed", ErrInvalidOffer, o.Worker)
	case o.Capacity < 0:
		return fmt.Errorf("%w: worker %s has negative capacity %d", ErrInvalidOffer, o.Worker, o.Capacity)
	}
	return nil
}

// Bid is a consumer's terms for every task of a group: the highest price
// per hour it pays, the slowest worker it accepts and how many replicas
// each task runs on.
type Bid struct {
	Consumer string          `json:"consumer"`
	Group    string          `json:"group"`
	MaxPrice protocol.Micros `json:"max_price"` // per hour
	MinSpeed protocol.Speed  `json:"min_speed"`
	Replicas int             `json:"replicas"`
}

// Validate checks the bid against cfg, wrapping ErrInvalidBid (or
// ErrOverflow when its escrow would not fit in int64 micro-units).
func (b Bid) Validate(cfg Config) error {
	switch {
	case b.Consumer == "":
		return fmt.Errorf("%w: empty consumer", ErrInvalidBid)
	case b.MaxPrice < 0:
		return fmt.Errorf("%w: negative max price %d", ErrInvalidBid, b.MaxPrice)
	case b.Replicas < MinReplicas || b.Replicas > cfg.MaxReplicas:
		return fmt.Errorf("%w: %d replicas, want %d to %d", ErrInvalidBid, b.Replicas, MinReplicas, cfg.MaxReplicas)
	}
	slots := int64(b.Replicas + cfg.MaxExtraReplicas)
	if per := ReplicaEscrow(b.MaxPrice, cfg.maxRunMicros(), max(b.MinSpeed, cfg.MinRatedSpeed)); int64(per) > math.MaxInt64/slots {
		return fmt.Errorf("%w: max price %s × %v × %d replicas", ErrOverflow, b.MaxPrice, cfg.MaxRunTime, slots)
	}
	return nil
}

// Match is one worker chosen for a bid, at the worker's asking price
// (pay-as-ask).
type Match struct {
	Worker string          `json:"worker"`
	Owner  string          `json:"owner,omitempty"`
	Price  protocol.Micros `json:"price"` // per hour, ≤ the bid's MaxPrice
	Speed  protocol.Speed  `json:"speed"` // rated, ≥ the bid's MinSpeed
}

// TrustFunc reports a worker's trust rating (ppm, 0..1 000 000) and whether
// it is struck out (excluded from selection). Reputations.Trust builds one.
type TrustFunc func(worker string) (ratingPPM uint32, struckOut bool)

// Book is the verifier's order book: current offers by worker and the
// replicas reserved on each worker. Reservations are kept apart from offers
// so that a fresh offer (or a removal and re-offer) never resets the count of
// replicas a worker still holds. The zero Book is ready to use.
type Book struct {
	Offers   map[string]Offer `json:"offers"`
	Reserved map[string]int   `json:"reserved"`
}

// NewBook returns an empty book.
func NewBook() *Book { return &Book{Offers: map[string]Offer{}, Reserved: map[string]int{}} }

func (b *Book) init() {
	if b.Offers == nil {
		b.Offers = map[string]Offer{}
	}
	if b.Reserved == nil {
		b.Reserved = map[string]int{}
	}
}

// Upsert adds or replaces the worker's offer; reservations are untouched.
func (b *Book) Upsert(o Offer) error {
	if err := o.Validate(); err != nil {
		return err
	}
	b.init()
	b.Offers[o.Worker] = o
	return nil
}

// Remove withdraws the worker's offer; its reservations stay until released.
func (b *Book) Remove(worker string) { delete(b.Offers, worker) }

// Expire removes every offer whose Expires is set and ≤ now and returns the
// removed workers, sorted.
func (b *Book) Expire(now int64) []string {
	var gone []string
	for w, o := range b.Offers {
		if o.Expires != 0 && o.Expires <= now {
			gone = append(gone, w)
		}
	}
	slices.Sort(gone)
	for _, w := range gone {
		delete(b.Offers, w)
	}
	return gone
}

// Reserve records one more replica held by the worker without checking
// capacity: it is for rebuilding reservations from persisted tasks after a
// restart. Select reserves by itself.
func (b *Book) Reserve(worker string) {
	b.init()
	b.Reserved[worker]++
}

// Release frees one replica reserved on the worker (when its replica
// reports, fails or times out). Releasing with nothing reserved is a no-op.
func (b *Book) Release(worker string) {
	if b.Reserved[worker] <= 1 {
		delete(b.Reserved, worker)
		return
	}
	b.Reserved[worker]--
}

// Free is the worker's unreserved capacity (0 without an offer).
func (b *Book) Free(worker string) int {
	o, ok := b.Offers[worker]
	if !ok {
		return 0
	}
	return max(o.Capacity-b.Reserved[worker], 0)
}

// SelectError explains why Select could not supply the replicas: how many
// offers fell out for each reason (each offer counted once, under the first
// reason in this order). It wraps ErrNoEligibleWorkers.
type SelectError struct {
	Need, Eligible int
	Expired        int // offer expired
	Excluded       int // in the exclude set (already holds or held the task)
	StruckOut      int // too many strikes
	TooExpensive   int // asks more than the bid's max price
	TooSlow        int // rated below the bid's min speed
	Busy           int // no free capacity
}

func (e *SelectError) Error() string {
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(e.TooExpensive, "too expensive")
	add(e.TooSlow, "too slow")
	add(e.Busy, "busy")
	add(e.Excluded, "excluded")
	add(e.StruckOut, "struck out")
	add(e.Expired, "expired")
	why := strings.Join(parts, ", ")
	if why == "" {
		why = "no offers"
	}
	if e.Eligible == 0 {
		return "market: no eligible workers: " + why
	}
	return fmt.Sprintf("market: not enough eligible workers: need %d, found %d; %s", e.Need, e.Eligible, why)
}

// Unwrap makes errors.Is(err, ErrNoEligibleWorkers) true.
func (e *SelectError) Unwrap() error { return ErrNoEligibleWorkers }

type candidate struct {
	offer  Offer
	owner  string
	weight uint64
}

// Select chooses n distinct workers for bid and reserves one replica on
// each. Eligible: offer not expired at now, worker not in exclude, not
// struck out, MinPrice ≤ MaxPrice, Speed ≥ MinSpeed, free capacity > 0.
// Each pick is random, weighted by trust rating (a rating of 0 weighs as 1)
// times the cheapest eligible price per standard hour over the worker's,
// among eligible workers whose owner was not yet picked; only when every
// remaining owner was picked does it fall back to a repeated owner. It is
// all or nothing: with fewer than n eligible workers nothing is reserved and
// a *SelectError is returned. trust may be nil (everyone rated 1 000 000).
func (b *Book) Select(bid Bid, n int, exclude map[string]bool, trust TrustFunc, now int64, rnd Rand) ([]Match, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: asked for %d workers", ErrInvalidBid, n)
	}
	b.init()
	serr := &SelectError{Need: n}
	var cands []candidate
	for w, o := range b.Offers {
		var rating uint32 = PPM
		struck := false
		if trust != nil {
			rating, struck = trust(w)
		}
		switch {
		case o.Expires != 0 && o.Expires <= now:
			serr.Expired++
		case exclude[w]:
			serr.Excluded++
		case struck:
			serr.StruckOut++
		case o.MinPrice > bid.MaxPrice:
			serr.TooExpensive++
		case o.Speed < bid.MinSpeed:
			serr.TooSlow++
		case o.Capacity-b.Reserved[w] <= 0:
			serr.Busy++
		default:
			owner := o.Owner
			if owner == "" {
				owner = "\x00" + w
			}
			cands = append(cands, candidate{o, owner, uint64(max(min(rating, PPM), 1))})
		}
	}
	serr.Eligible = len(cands)
	if len(cands) < n {
		return nil, serr
	}
	// Cheaper work weighs more: each weight is scaled by the cheapest
	// price per standard hour (price ÷ rated speed) over the worker's own,
	// so a worker rated slower than it is asks, in effect, more per unit
	// of work and is picked less.
	std := make([]uint64, len(cands))
	cheapest := uint64(math.MaxUint64)
	for i, c := range cands {
		std[i] = uint64(ChargePicos(c.offer.MinPrice, StandardHour, c.offer.Speed))
		cheapest = min(cheapest, std[i])
	}
	for i := range cands {
		if std[i] > 0 {
			cands[i].weight = max(mulDiv(cands[i].weight, cheapest, std[i]), 1)
		}
	}
	// Deterministic order for a given random source.
	slices.SortFunc(cands, func(a, b candidate) int { return strings.Compare(a.offer.Worker, b.offer.Worker) })
	used := map[string]bool{}
	out := make([]Match, 0, n)
	for len(out) < n {
		pool := make([]int, 0, len(cands))
		for i, c := range cands {
			if !used[c.owner] {
				pool = append(pool, i)
			}
		}
		if len(pool) == 0 {
			for i := range cands {
				pool = append(pool, i)
			}
		}
		var total uint64
		for _, i := range pool {
			total += cands[i].weight
		}
		r := rnd.Uint64N(total)
		pick := pool[len(pool)-1]
		for _, i := range pool {
			if r < cands[i].weight {
				pick = i
				break
			}
			r -= cands[i].weight
		}
		c := cands[pick]
		used[c.owner] = true
		out = append(out, Match{Worker: c.offer.Worker, Owner: c.offer.Owner, Price: c.offer.MinPrice, Speed: c.offer.Speed})
		cands = slices.Delete(cands, pick, pick+1)
	}
	for _, m := range out {
		b.Reserved[m.Worker]++
	}
	return out, nil
}
