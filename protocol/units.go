package protocol

import "github.com/aspen-market/aspen/protocol/units"

// Money and speed live in package units (no dependencies, for the light
// client); these aliases keep them part of the protocol's vocabulary.

// Micros is an amount of money in integer micro-units of the currency:
// 1_000_000 Micros is one unit, 40_000 is four cents. See units.Micros.
type Micros = units.Micros

// MicrosPerUnit is the number of micro-units in one currency unit.
const MicrosPerUnit = units.MicrosPerUnit

// ParseAmount parses a decimal currency amount such as "0.04" into
// micro-units. See units.ParseAmount.
func ParseAmount(s string) (Micros, error) { return units.ParseAmount(s) }

// Speed is a machine speed in milli standard units: 1000 is the verifier's
// reference machine. See units.Speed.
type Speed = units.Speed

// SpeedUnit is Speed(1.0).
const SpeedUnit = units.SpeedUnit

// ParseSpeed parses a decimal speed such as "1.0" into milli standard
// units. See units.ParseSpeed.
func ParseSpeed(s string) (Speed, error) { return units.ParseSpeed(s) }
