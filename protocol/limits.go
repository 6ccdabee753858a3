package protocol

import "time"

// Version is the protocol version carried in every envelope.
const Version = 1

// Limits. A decoder refuses anything past them with ErrMalformed or
// ErrTooLarge; SPEC.md lists them with their reasons.
const (
	// MaxMessageSize bounds one framed envelope on a stream.
	MaxMessageSize = 4 << 20
	// MaxGossipSize bounds one envelope published on a topic.
	MaxGossipSize = 16 << 10
	// MaxInline bounds input or result bytes carried inside a message
	// instead of being fetched as a blob.
	MaxInline = 4 << 10
	// MaxTasksPerMessage bounds the tasks of one submit, assignment,
	// receipt or release.
	MaxTasksPerMessage = 4096
	// MaxAddrs bounds the multiaddrs a message carries.
	MaxAddrs = 16
	// MaxAddrLen bounds one multiaddr string.
	MaxAddrLen = 256
	// MaxTextLen bounds free text (reasons, owner labels, trap messages).
	MaxTextLen = 1024
	// MaxStderr bounds a job's stderr kept in its output.
	MaxStderr = 64 << 10
	// MaxBlobSize bounds one blob (module, input or result).
	MaxBlobSize = 4 << 30
	// MaxCIDBytes bounds a binary CID.
	MaxCIDBytes = 128
	// MaxPeerIDBytes bounds a binary peer ID.
	MaxPeerIDBytes = 128
	// MaxSigBytes bounds a signature.
	MaxSigBytes = 128
	// MaxHolding bounds the assignment IDs one heartbeat lists.
	MaxHolding = 65536
	// MaxReplicas bounds the replicas a consumer may ask for.
	MaxReplicas = 16
	// MaxClockSkew is how far a message's time may be ahead of ours.
	MaxClockSkew = 2 * time.Minute
	// MaxOfferTTL bounds how far in the future an offer or bid may expire.
	MaxOfferTTL = 10 * time.Minute
	// MaxJobTimeout bounds a job's running time limit.
	MaxJobTimeout = 24 * time.Hour
)

// Gossip topics.
const (
	TopicOffers = "/aspen/offers/2"
	TopicBids   = "/aspen/bids/2"
)

// Stream protocol IDs. Every stream carries length-prefixed frames (see
// WriteFrame): a request envelope, then a response envelope.
const (
	ProtoBlob      = "/aspen/blob/2.0.0"
	ProtoRegister  = "/aspen/register/1.0.0"
	ProtoSubmit    = "/aspen/submit/1.0.0"
	ProtoAssign    = "/aspen/assign/1.0.0"
	ProtoReceipt   = "/aspen/receipt/1.0.0"
	ProtoHeartbeat = "/aspen/heartbeat/1.0.0"
	ProtoRelease   = "/aspen/release/1.0.0"
	ProtoCancel    = "/aspen/cancel/1.0.0"
	ProtoStatement = "/aspen/statement/1.0.0"
)
