// Package units is Aspen's money and speed: exact integer micro-units of
// the currency and milli standard units of speed, with their decimal
// forms. It imports nothing but the standard library, so that the light
// Go client (package client) can parse and print amounts without the
// network stack; package protocol aliases these types.
package units

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Sentinel errors; package protocol exports the same values.
var (
	ErrBadAmount = errors.New("protocol: bad amount")
	ErrBadSpeed  = errors.New("protocol: bad speed")
)

// Micros is an amount of money in integer micro-units of the currency:
// 1_000_000 Micros is one unit (e.g. one dollar), 40_000 is four cents.
// Money is never represented as a float anywhere in Aspen.
type Micros int64

// MicrosPerUnit is the number of micro-units in one currency unit.
const MicrosPerUnit = 1_000_000

// ParseAmount parses a decimal currency amount such as "0.04", "12", "1.5"
// into micro-units. At most six fractional digits are accepted; negative
// amounts, exponents and anything else are refused.
func ParseAmount(s string) (Micros, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("%w: empty amount", ErrBadAmount)
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" && (!hasDot || frac == "") {
		return 0, fmt.Errorf("%w: %q", ErrBadAmount, s)
	}
	if whole == "" {
		whole = "0"
	}
	if hasDot && frac == "" {
		return 0, fmt.Errorf("%w: %q has a trailing dot", ErrBadAmount, s)
	}
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%w: %q is not a plain decimal number", ErrBadAmount, s)
		}
	}
	if len(frac) > 6 {
		return 0, fmt.Errorf("%w: %q has more than 6 decimal places", ErrBadAmount, s)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/MicrosPerUnit-1 {
		return 0, fmt.Errorf("%w: %q is too large", ErrBadAmount, s)
	}
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	return Micros(w*MicrosPerUnit + f), nil
}

// String formats the amount as a decimal with six fractional digits,
// trailing zeros trimmed to at least two: 40000 -> "0.04".
func (m Micros) String() string {
	neg := m < 0
	u := uint64(m)
	if neg {
		u = uint64(-m)
	}
	s := fmt.Sprintf("%d.%06d", u/MicrosPerUnit, u%MicrosPerUnit)
	for strings.HasSuffix(s, "0") && len(s)-strings.IndexByte(s, '.') > 3 {
		s = s[:len(s)-1]
	}
	if neg {
		return "-" + s
	}
	return s
}

// Speed is a machine speed in milli standard units: 1000 is the verifier's
// reference machine (the paper's "as fast as a 1 GHz CPU"). Work is
// speed × time, measured in standard cycles.
type Speed uint32

// SpeedUnit is Speed(1.0).
const SpeedUnit Speed = 1000

// ParseSpeed parses a decimal speed such as "1.0" or "0.25" (at most three
// fractional digits) into milli standard units.
func ParseSpeed(s string) (Speed, error) {
	s = strings.TrimSpace(s)
	whole, frac, hasDot := strings.Cut(s, ".")
	if s == "" || (hasDot && frac == "") || len(frac) > 3 {
		return 0, fmt.Errorf("%w: %q", ErrBadSpeed, s)
	}
	if whole == "" {
		whole = "0"
	}
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%w: %q", ErrBadSpeed, s)
		}
	}
	w, err := strconv.ParseUint(whole, 10, 32)
	if err != nil || w > 1_000_000 {
		return 0, fmt.Errorf("%w: %q is out of range", ErrBadSpeed, s)
	}
	f := uint64(0)
	if frac != "" {
		f, _ = strconv.ParseUint(frac+strings.Repeat("0", 3-len(frac)), 10, 32)
	}
	return Speed(w*1000 + f), nil
}

// String formats the speed as a decimal, e.g. 1250 -> "1.25".
func (s Speed) String() string {
	out := fmt.Sprintf("%d.%03d", s/1000, s%1000)
	for strings.HasSuffix(out, "0") && len(out)-strings.IndexByte(out, '.') > 2 {
		out = out[:len(out)-1]
	}
	return out
}
