// Package kernel computes iterated SHA-256 hash chains. It is the
// computation of the hashchain example.
package kernel

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strconv"
)

// MaxRounds bounds the number of rounds.
const MaxRounds = 1 << 48

// ErrInput reports input whose first line is not a round count in
// [1, MaxRounds].
var ErrInput = errors.New("want a first line N (1 <= N <= 2^48) followed by the data")

// Parse splits the example's input: the first line is the decimal round
// count N, everything after the first newline is the data (possibly empty).
func Parse(input []byte) (rounds uint64, data []byte, err error) {
	line, data, _ := bytes.Cut(input, []byte{'\n'})
	rounds, err = strconv.ParseUint(string(bytes.TrimSpace(line)), 10, 64)
	if err != nil || rounds == 0 || rounds > MaxRounds {
		return 0, nil, ErrInput
	}
	return rounds, data, nil
}

// Chain returns SHA-256 applied rounds times: h₁ = SHA-256(data),
// hᵢ₊₁ = SHA-256(hᵢ). rounds 0 returns SHA-256(data) as well.
func Chain(data []byte, rounds uint64) [32]byte {
	h := sha256.Sum256(data)
	for i := uint64(1); i < rounds; i++ {
		h = sha256.Sum256(h[:])
	}
	return h
}
