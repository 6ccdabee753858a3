package protocol

import (
	"errors"

	"github.com/aspen-market/aspen/protocol/units"
)

// Sentinel errors of the protocol package. Decoding errors wrap ErrMalformed
// so a caller can tell bad input from other failures with errors.Is.
var (
	ErrBadAmount    = units.ErrBadAmount
	ErrBadSpeed     = units.ErrBadSpeed
	ErrMalformed    = errors.New("protocol: malformed message")
	ErrTooLarge     = errors.New("protocol: message too large")
	ErrBadSignature = errors.New("protocol: bad signature")
	ErrWrongType    = errors.New("protocol: unexpected message type")
	ErrBadVersion   = errors.New("protocol: unsupported version")
	ErrCIDMismatch  = errors.New("protocol: bytes do not match CID")
	ErrBadCID       = errors.New("protocol: bad CID")
	ErrExpired      = errors.New("protocol: message expired")
)
