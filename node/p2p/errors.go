package p2p

import (
	"errors"
	"fmt"

	"github.com/aspen-market/aspen/protocol"
)

// Sentinel errors. Errors returned by this package wrap one of them (or a
// protocol sentinel such as protocol.ErrCIDMismatch), so callers can branch
// with errors.Is.
var (
	// ErrInvalidConfig: a Config field is missing or out of range.
	ErrInvalidConfig = errors.New("p2p: invalid config")
	// ErrClosed: the host has been closed.
	ErrClosed = errors.New("p2p: host closed")
	// ErrKeyFile: a key file cannot be read, parsed or is unsafe.
	ErrKeyFile = errors.New("p2p: bad key file")
	// ErrBadAddr: a peer address cannot be parsed.
	ErrBadAddr = errors.New("p2p: bad peer address")
	// ErrSignerMismatch: a message was signed by someone other than the
	// peer it came from (or, on gossip, other than its author).
	ErrSignerMismatch = errors.New("p2p: signer does not match sender")
	// ErrRemote: the remote peer refused a request; see RemoteError.
	ErrRemote = errors.New("p2p: request refused by peer")
	// ErrStream: a stream broke or carried something unexpected.
	ErrStream = errors.New("p2p: stream failed")
	// ErrNoPeers: a fetch was given no peer to fetch from.
	ErrNoPeers = errors.New("p2p: no peers to fetch from")
	// ErrBlobNotFound: no peer has the blob.
	ErrBlobNotFound = errors.New("p2p: blob not found")
	// ErrBlobBusy: the peer is serving too many blob streams.
	ErrBlobBusy = errors.New("p2p: blob server busy")
	// ErrBlobFetch: a blob could not be fetched from any peer.
	ErrBlobFetch = errors.New("p2p: blob fetch failed")
	// ErrRelayLimit: a blob range is too large for the relayed connection
	// that is the only way to its peer, and no direct connection (hole
	// punching, the peer dialling back) came up in time.
	ErrRelayLimit = errors.New("p2p: over the relayed connection's limit and no direct connection")
	// ErrBlobTooSlow: a blob stream fell below Config.BlobMinRate, or a
	// fetch outlasted Config.BlobFetchTimeout.
	ErrBlobTooSlow = errors.New("p2p: blob transfer too slow")
	// ErrIgnore may be wrapped by a Config.ValidateOffer/ValidateBid hook
	// error to drop a message without penalising the peer that relayed it.
	ErrIgnore = errors.New("p2p: ignore message")
)

// RemoteError is a refusal answered by the remote peer as a protocol.Ack
// with OK == false. It wraps ErrRemote. Handlers may return a *RemoteError
// (see Refuse) to choose the Ack code and text sent back.
type RemoteError struct {
	Code    protocol.AckCode
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("p2p: peer refused (code %d): %s", e.Code, e.Message)
}

// Unwrap makes errors.Is(err, ErrRemote) true.
func (e *RemoteError) Unwrap() error { return ErrRemote }

// Refuse returns a *RemoteError a Handler can return to answer with
// Ack{OK: false, Code: code, Error: text}.
func Refuse(code protocol.AckCode, format string, a ...any) error {
	return &RemoteError{Code: code, Message: fmt.Sprintf(format, a...)}
}
