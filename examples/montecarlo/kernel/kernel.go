// Package kernel estimates π by the Monte Carlo method with a seeded
// SplitMix64 generator and integer arithmetic only, so the estimate is the
// same on every machine. It is the computation of the montecarlo example.
package kernel

import (
	"bytes"
	"errors"
	"math/bits"
	"strconv"
)

// MaxSamples bounds the number of samples (keeps the decimal formatting in
// uint64).
const MaxSamples = 1 << 56

// ErrInput reports input that is not "SEED SAMPLES" with 1 ≤ SAMPLES ≤ MaxSamples.
var ErrInput = errors.New(`want "SEED SAMPLES" with 1 <= SAMPLES <= 2^56`)

// Parse parses the example's input: the seed and the number of samples,
// decimal, separated by white space.
func Parse(input []byte) (seed, samples uint64, err error) {
	f := bytes.Fields(input)
	if len(f) != 2 {
		return 0, 0, ErrInput
	}
	if seed, err = strconv.ParseUint(string(f[0]), 10, 64); err != nil {
		return 0, 0, ErrInput
	}
	if samples, err = strconv.ParseUint(string(f[1]), 10, 64); err != nil {
		return 0, 0, ErrInput
	}
	if samples == 0 || samples > MaxSamples {
		return 0, 0, ErrInput
	}
	return seed, samples, nil
}

// Hits draws samples points (x, y) uniformly from [0, 2³²)² with SplitMix64
// seeded by seed and counts those with x² + y² < 2⁶⁴: inside the quarter
// circle of radius 2³², an area π/4 of the square.
func Hits(seed, samples uint64) uint64 {
	state := seed
	var hits uint64
	for range samples {
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		x, y := z>>32, z&0xffffffff
		if _, carry := bits.Add64(x*x, y*y, 0); carry == 0 {
			hits++
		}
	}
	return hits
}

// Estimate formats 4·hits/samples with the given number of decimals,
// exactly (integer long division, truncated).
func Estimate(hits, samples uint64, decimals int) string {
	num := 4 * hits // hits ≤ samples ≤ 2^56
	out := strconv.AppendUint(nil, num/samples, 10)
	rem := num % samples
	if decimals > 0 {
		out = append(out, '.')
	}
	for range decimals {
		rem *= 10 // rem < samples ≤ 2^56
		out = append(out, byte('0'+rem/samples))
		rem %= samples
	}
	return string(out)
}
