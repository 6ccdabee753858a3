// Package kernel counts primes in a range with a segmented sieve of
// Eratosthenes. It is the computation of the primes example, importable so
// that it can also run natively (tests, benchmarks).
package kernel

import (
	"bytes"
	"errors"
	"math"
	"math/bits"
	"strconv"
)

// MaxHi bounds the upper end of a range, keeping every product in uint64.
const MaxHi = 1 << 50

// ErrInput reports input that is not "LO HI" with 0 ≤ LO ≤ HI ≤ MaxHi.
var ErrInput = errors.New(`want "LO HI" with 0 <= LO <= HI <= 2^50`)

// ParseRange parses the example's input: two decimal integers LO and HI
// separated by white space.
func ParseRange(input []byte) (lo, hi uint64, err error) {
	f := bytes.Fields(input)
	if len(f) != 2 {
		return 0, 0, ErrInput
	}
	if lo, err = strconv.ParseUint(string(f[0]), 10, 64); err != nil {
		return 0, 0, ErrInput
	}
	if hi, err = strconv.ParseUint(string(f[1]), 10, 64); err != nil {
		return 0, 0, ErrInput
	}
	if lo > hi || hi > MaxHi {
		return 0, 0, ErrInput
	}
	return lo, hi, nil
}

// segmentWords is the sieve segment in 64-bit words of odd-number marks
// (64 KiB, 2^19 odd numbers: a window of 2^20 integers).
const segmentWords = 1 << 13

// CountPrimes returns how many primes p satisfy lo ≤ p ≤ hi (hi ≤ MaxHi).
// Odd numbers in a window are marked composite in a bitset, one bit per
// odd number, by every odd base prime up to √hi; primes are the unmarked
// bits, counted with a population count.
func CountPrimes(lo, hi uint64) uint64 {
	if hi > MaxHi {
		hi = MaxHi
	}
	if lo < 2 {
		lo = 2
	}
	if lo > hi {
		return 0
	}
	var count uint64
	if lo == 2 {
		count = 1
		lo = 3
	}
	lo |= 1 // first odd number ≥ lo
	if lo > hi {
		return count
	}
	base := oddPrimesUpTo(isqrt(hi))
	words := make([]uint64, segmentWords)
	// seg is words as an array: indexed with x%segmentWords, which is x for
	// every index below (i < n ≤ 64·segmentWords), the compiler needs no
	// bounds check.
	seg := (*[segmentWords]uint64)(words)
	const span = 64 * segmentWords // odd numbers per segment
	for start := lo; start <= hi; start += 2 * span {
		n := uint64(span) // odd numbers in this segment
		if rem := (hi-start)/2 + 1; rem < n {
			n = rem
		}
		w := words[:(n+63)/64]
		clear(w)
		last := start + 2*(n-1)
		for _, p := range base {
			m := p * p
			if m > last {
				break
			}
			if m < start {
				m = (start + p - 1) / p * p
				if m%2 == 0 {
					m += p
				}
			}
			i := (m - start) / 2 // first bit to mark; then every p-th
			if p < 64 {
				markSmall(w, i, p)
				continue
			}
			// Eight marks per iteration, into seg without bounds checks,
			// then the rest one at a time. Go's wasm code takes every jump
			// back to a loop's start through the function's block
			// dispatcher, and every check costs a compare and a branch, so
			// in the sandbox both cost more than the mark itself.
			for ; i+7*p < n; i += 8 * p {
				seg[i/64%segmentWords] |= 1 << (i % 64)
				j := i + p
				seg[j/64%segmentWords] |= 1 << (j % 64)
				j += p
				seg[j/64%segmentWords] |= 1 << (j % 64)
				j += p
				seg[j/64%segmentWords] |= 1 << (j % 64)
				j += p
				seg[j/64%segmentWords] |= 1 << (j % 64)
				j += p
				seg[j/64%segmentWords] |= 1 << (j % 64)
				j += p
				seg[j/64%segmentWords] |= 1 << (j % 64)
				j += p
				seg[j/64%segmentWords] |= 1 << (j % 64)
			}
			for ; i < n; i += p {
				w[i/64] |= 1 << (i % 64)
			}
		}
		if tail := n % 64; tail != 0 { // bits past the range count as composite
			w[len(w)-1] |= ^uint64(0) << tail
		}
		for _, x := range w {
			count += uint64(64 - bits.OnesCount64(x))
		}
	}
	return count
}

// markSmall marks bits first, first+p, first+2p, ... of w a word at a time:
// for p < 64 every word gets at least one mark, so one OR per word beats one
// per mark. The marks in a word are the bits j ≡ s (mod p), s the word's
// residue: the prime's pattern (bits 0, p, 2p, ...) shifted left by s. Four
// words are marked per iteration, each with its own residue, so the four
// residue updates do not wait on each other.
func markSmall(w []uint64, first, p uint64) {
	var pattern uint64
	for j := uint64(0); j < 64; j += p {
		pattern |= 1 << j
	}
	k := first / 64
	s := first % 64 % p // marked bits of word k are ≡ s (mod p)
	// In word k, only the bits from first on.
	w[k] |= pattern << s &^ (1<<(first%64) - 1)
	// Word k+1's residue is s+step (mod p).
	next := func(s, step uint64) uint64 {
		if s += step; s >= p {
			s -= p
		}
		return s
	}
	step := p - 64%p
	s0 := next(s, step)
	s1 := next(s0, step)
	s2 := next(s1, step)
	s3 := next(s2, step)
	step4 := 4 * step % p
	rest := w[k+1:]
	for len(rest) >= 4 {
		rest[0] |= pattern << (s0 % 64)
		rest[1] |= pattern << (s1 % 64)
		rest[2] |= pattern << (s2 % 64)
		rest[3] |= pattern << (s3 % 64)
		s0, s1, s2, s3 = next(s0, step4), next(s1, step4), next(s2, step4), next(s3, step4)
		rest = rest[4:]
	}
	for i := range rest {
		rest[i] |= pattern << (s0 % 64)
		s0 = next(s0, step)
	}
}

// oddPrimesUpTo returns the odd primes ≤ n.
func oddPrimesUpTo(n uint64) []uint64 {
	if n < 3 {
		return nil
	}
	composite := make([]bool, n+1)
	var primes []uint64
	for i := uint64(3); i <= n; i += 2 {
		if composite[i] {
			continue
		}
		primes = append(primes, i)
		for j := i * i; j <= n; j += 2 * i {
			composite[j] = true
		}
	}
	return primes
}

// isqrt returns ⌊√n⌋.
func isqrt(n uint64) uint64 {
	r := uint64(math.Sqrt(float64(n)))
	for r*r > n {
		r--
	}
	for (r+1)*(r+1) <= n {
		r++
	}
	return r
}
