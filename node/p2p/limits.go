package p2p

import (
	"github.com/libp2p/go-libp2p"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/pbnjay/memory"

	"github.com/aspen-market/aspen/protocol"
)

// RequestProtocols are Aspen's request/response stream protocols; each gets
// explicit resource-manager limits.
var RequestProtocols = []string{
	protocol.ProtoRegister, protocol.ProtoSubmit, protocol.ProtoAssign,
	protocol.ProtoReceipt, protocol.ProtoHeartbeat, protocol.ProtoRelease,
	protocol.ProtoCancel, protocol.ProtoStatement,
}

const (
	mib = 1 << 20
	gib = 1 << 30
)

// Limits returns the resource-manager limits New uses, scaled to memory
// bytes and fds file descriptors (see Config.MaxMemory, Config.MaxFD; 0
// means auto). They start from libp2p's defaults and raise what a verifier
// talking to hundreds of workers over thousands of concurrent streams
// needs; every Aspen protocol gets explicit per-protocol and per-peer
// stream limits. Increases are per GiB of memory.
func Limits(mem int64, fds int) rcmgr.ConcreteLimitConfig {
	if mem <= 0 {
		mem = int64(memory.TotalMemory() / 8)
		if mem <= 0 {
			mem = 1 * gib
		}
	}
	if fds <= 0 {
		fds = fdLimit() / 2
	}
	l := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&l)

	l.SystemBaseLimit = rcmgr.BaseLimit{
		ConnsInbound: 256, ConnsOutbound: 256, Conns: 512,
		StreamsInbound: 4096, StreamsOutbound: 4096, Streams: 8192,
		Memory: 256 * mib, FD: 512,
	}
	l.SystemLimitIncrease = rcmgr.BaseLimitIncrease{
		ConnsInbound: 256, ConnsOutbound: 256, Conns: 512,
		StreamsInbound: 4096, StreamsOutbound: 4096, Streams: 8192,
		Memory: 1 * gib, FDFraction: 1,
	}
	l.AllowlistedSystemBaseLimit = l.SystemBaseLimit
	l.AllowlistedSystemLimitIncrease = l.SystemLimitIncrease
	// Streams are transient until their protocol is negotiated: bursts of
	// thousands of new streams must not trip this.
	l.TransientBaseLimit = rcmgr.BaseLimit{
		ConnsInbound: 64, ConnsOutbound: 128, Conns: 128,
		StreamsInbound: 1024, StreamsOutbound: 1024, Streams: 2048,
		Memory: 64 * mib, FD: 64,
	}
	l.TransientLimitIncrease = rcmgr.BaseLimitIncrease{
		ConnsInbound: 32, ConnsOutbound: 64, Conns: 64,
		StreamsInbound: 1024, StreamsOutbound: 1024, Streams: 2048,
		Memory: 128 * mib, FDFraction: 0.25,
	}
	l.AllowlistedTransientBaseLimit = l.TransientBaseLimit
	l.AllowlistedTransientLimitIncrease = l.TransientLimitIncrease
	l.PeerBaseLimit = rcmgr.BaseLimit{
		ConnsInbound: 8, ConnsOutbound: 8, Conns: 8,
		StreamsInbound: 1024, StreamsOutbound: 1024, Streams: 2048,
		Memory: 128 * mib, FD: 8,
	}
	l.PeerLimitIncrease = rcmgr.BaseLimitIncrease{
		StreamsInbound: 256, StreamsOutbound: 256, Streams: 512,
		Memory: 128 * mib, FDFraction: 1.0 / 64,
	}
	// One connection may carry a blob stream with a 16 MiB yamux window
	// plus request streams.
	l.ConnBaseLimit.Memory = 64 * mib

	for _, p := range RequestProtocols {
		l.AddProtocolLimit(libp2pproto.ID(p),
			rcmgr.BaseLimit{StreamsInbound: 4096, StreamsOutbound: 4096, Streams: 8192, Memory: 64 * mib},
			rcmgr.BaseLimitIncrease{StreamsInbound: 4096, StreamsOutbound: 4096, Streams: 8192, Memory: 128 * mib})
		l.AddProtocolPeerLimit(libp2pproto.ID(p),
			rcmgr.BaseLimit{StreamsInbound: 256, StreamsOutbound: 256, Streams: 512, Memory: 16 * mib},
			rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 16 * mib})
	}
	// Blob streams are few and big; the server's own semaphore
	// (Config.MaxBlobStreams) answers BlobBusy well before these.
	l.AddProtocolLimit(protocol.ProtoBlob,
		rcmgr.BaseLimit{StreamsInbound: 256, StreamsOutbound: 256, Streams: 512, Memory: 256 * mib},
		rcmgr.BaseLimitIncrease{StreamsInbound: 128, StreamsOutbound: 128, Streams: 256, Memory: 256 * mib})
	l.AddProtocolPeerLimit(protocol.ProtoBlob,
		rcmgr.BaseLimit{StreamsInbound: 32, StreamsOutbound: 32, Streams: 64, Memory: 64 * mib},
		rcmgr.BaseLimitIncrease{})
	return l.Scale(mem, fds)
}
