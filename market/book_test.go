package market

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aspen-market/aspen/protocol"
	"pgregory.net/rapid"
)

func TestBookProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := NewBook()
		held := map[string]int{} // model of reservations
		struck := map[string]bool{}
		workers := []string{"A", "B", "C", "D", "E", "F"}
		trust := func(w string) (uint32, bool) { return uint32(len(w)) * 1000, struck[w] }
		rnd := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 0))
		now := int64(1000)
		for range rapid.IntRange(1, 60).Draw(t, "ops") {
			now += rapid.Int64Range(0, 100).Draw(t, "dt")
			switch rapid.IntRange(0, 6).Draw(t, "op") {
			case 0, 1: // Upsert (maybe a fresh offer from a worker with reservations)
				o := Offer{
					Worker:   rapid.SampledFrom(workers).Draw(t, "w"),
					Owner:    rapid.SampledFrom([]string{"", "x", "y"}).Draw(t, "owner"),
					MinPrice: protocol.Micros(rapid.Int64Range(0, 10).Draw(t, "price")),
					Speed:    protocol.Speed(rapid.Uint32Range(1, 10).Draw(t, "speed")),
					Capacity: rapid.IntRange(0, 3).Draw(t, "cap"),
					Expires:  now + rapid.Int64Range(-10, 300).Draw(t, "ttl"),
				}
				if err := b.Upsert(o); err != nil {
					t.Fatal(err)
				}
			case 2:
				b.Remove(rapid.SampledFrom(workers).Draw(t, "w"))
			case 3:
				for _, w := range b.Expire(now) {
					if _, ok := b.Offers[w]; ok {
						t.Fatalf("expired %s still offered", w)
					}
				}
				for w, o := range b.Offers {
					if o.Expires <= now {
						t.Fatalf("offer %s expired at %d survives %d", w, o.Expires, now)
					}
				}
			case 4: // Release something held
				var hs []string
				for w, n := range held {
					if n > 0 {
						hs = append(hs, w)
					}
				}
				if len(hs) > 0 {
					slices.Sort(hs)
					w := rapid.SampledFrom(hs).Draw(t, "rel")
					b.Release(w)
					held[w]--
				}
			case 5:
				struck[rapid.SampledFrom(workers).Draw(t, "w")] = true
			case 6: // Select
				bid := Bid{Consumer: "C", MaxPrice: protocol.Micros(rapid.Int64Range(0, 10).Draw(t, "max")),
					MinSpeed: protocol.Speed(rapid.Uint32Range(0, 10).Draw(t, "min"))}
				n := rapid.IntRange(1, 4).Draw(t, "n")
				ex := map[string]bool{}
				for _, w := range workers {
					if rapid.IntRange(0, 4).Draw(t, "ex") == 1 {
						ex[w] = true
					}
				}
				// Eligibility as the rules state it, before the call.
				eligible := map[string]bool{}
				owners := map[string]bool{}
				for w, o := range b.Offers {
					if o.Expires > now && !ex[w] && !struck[w] && o.MinPrice <= bid.MaxPrice &&
						o.Speed >= bid.MinSpeed && held[w] < o.Capacity {
						eligible[w] = true
						if o.Owner == "" {
							owners["\x00"+w] = true
						} else {
							owners[o.Owner] = true
						}
					}
				}
				before := fmt.Sprint(b.Reserved)
				ms, err := b.Select(bid, n, ex, trust, now, rnd)
				if err != nil {
					var se *SelectError
					if !errors.Is(err, ErrNoEligibleWorkers) || !errors.As(err, &se) {
						t.Fatalf("Select error %v", err)
					}
					if len(eligible) >= n || se.Eligible != len(eligible) {
						t.Fatalf("refused with %d eligible (error says %d), need %d", len(eligible), se.Eligible, n)
					}
					sum := se.Eligible + se.Expired + se.Excluded + se.StruckOut + se.TooExpensive + se.TooSlow + se.Busy
					if sum != len(b.Offers) {
						t.Fatalf("reason counts %+v do not add up to %d offers", se, len(b.Offers))
					}
					if fmt.Sprint(b.Reserved) != before {
						t.Fatalf("failed Select changed reservations")
					}
					continue
				}
				if len(ms) != n {
					t.Fatalf("%d matches for %d", len(ms), n)
				}
				seen := map[string]bool{}
				usedOwners := map[string]bool{}
				for _, m := range ms {
					o := b.Offers[m.Worker]
					if !eligible[m.Worker] || seen[m.Worker] {
						t.Fatalf("picked ineligible or repeated worker %s", m.Worker)
					}
					if m.Price != o.MinPrice || m.Price > bid.MaxPrice || m.Speed < bid.MinSpeed || m.Speed != o.Speed {
						t.Fatalf("match %+v violates bid %+v", m, bid)
					}
					seen[m.Worker] = true
					held[m.Worker]++
					if held[m.Worker] > o.Capacity {
						t.Fatalf("worker %s overbooked: %d > %d", m.Worker, held[m.Worker], o.Capacity)
					}
					own := o.Owner
					if own == "" {
						own = "\x00" + m.Worker
					}
					usedOwners[own] = true
				}
				if want := min(n, len(owners)); len(usedOwners) < want {
					t.Fatalf("picked %d owners, %d distinct were possible", len(usedOwners), want)
				}
			}
			// Reservations always equal the model, whatever happened to offers.
			for _, w := range workers {
				if b.Reserved[w] != held[w] {
					t.Fatalf("worker %s reserved %d, holds %d", w, b.Reserved[w], held[w])
				}
			}
		}
		// The book survives a JSON round trip.
		js, _ := json.Marshal(b)
		var back Book
		if err := json.Unmarshal(js, &back); err != nil || !reflect.DeepEqual(back.Offers, b.Offers) {
			t.Fatalf("JSON round trip: %v", err)
		}
	})
}

func TestSelectErrorMessage(t *testing.T) {
	b := NewBook()
	add := func(w string, price protocol.Micros, speed protocol.Speed, capacity int) {
		if err := b.Upsert(Offer{Worker: w, MinPrice: price, Speed: speed, Capacity: capacity}); err != nil {
			t.Fatal(err)
		}
	}
	add("e1", 9, 1000, 1)
	add("e2", 9, 1000, 1)
	add("e3", 9, 1000, 1)
	add("s1", 1, 100, 1)
	add("b1", 1, 1000, 0)
	add("b2", 1, 1000, 1)
	b.Reserve("b2")
	_, err := b.Select(Bid{MaxPrice: 5, MinSpeed: 500}, 1, nil, nil, 0, rand.New(rand.NewPCG(1, 2)))
	if !errors.Is(err, ErrNoEligibleWorkers) {
		t.Fatalf("err = %v", err)
	}
	if want := "market: no eligible workers: 3 too expensive, 1 too slow, 2 busy"; err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	if err := b.Upsert(Offer{Worker: "b2", MinPrice: 1, Speed: 1000, Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	if b.Free("b2") != 0 {
		t.Fatal("a fresh offer reset a held reservation")
	}
	add("ok", 1, 1000, 1)
	_, err = b.Select(Bid{MaxPrice: 5, MinSpeed: 500}, 2, nil, nil, 0, rand.New(rand.NewPCG(1, 2)))
	if err == nil || !strings.Contains(err.Error(), "need 2, found 1") {
		t.Fatalf("err = %v", err)
	}
	if err := b.Upsert(Offer{Worker: "", Speed: 1}); !errors.Is(err, ErrInvalidOffer) {
		t.Fatalf("empty worker: %v", err)
	}
	if err := b.Upsert(Offer{Worker: "z", Speed: 0}); !errors.Is(err, ErrInvalidOffer) {
		t.Fatalf("zero speed: %v", err)
	}
}

func TestSelectWeightsByTrust(t *testing.T) {
	b := NewBook()
	for _, w := range []string{"good", "poor"} {
		if err := b.Upsert(Offer{Worker: w, Speed: 1000, Capacity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	trust := func(w string) (uint32, bool) {
		if w == "good" {
			return 900_000, false
		}
		return 100_000, false
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	good := 0
	const n = 20_000
	for range n {
		ms, err := b.Select(Bid{MaxPrice: 1}, 1, nil, trust, 0, rnd)
		if err != nil {
			t.Fatal(err)
		}
		if ms[0].Worker == "good" {
			good++
		}
		b.Release(ms[0].Worker)
	}
	// Expected 90%; allow ±1.5 points (about 7 standard deviations).
	if good < n*885/1000 || good > n*915/1000 {
		t.Fatalf("good picked %d of %d times, want about 90%%", good, n)
	}
}

func TestSpotCheckRate(t *testing.T) {
	c := DefaultConfig()
	rnd := rand.New(rand.NewPCG(3, 4))
	hits := 0
	const n = 200_000
	for range n {
		if SpotCheck(c, rnd) {
			hits++
		}
	}
	if hits < n*45/1000 || hits > n*55/1000 {
		t.Fatalf("spot-checked %d of %d, want about 5%%", hits, n)
	}
	c.SpotCheckPPM = 0
	if SpotCheck(c, rnd) {
		t.Fatal("spot check at rate 0")
	}
}
