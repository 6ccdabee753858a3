package p2p

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
)

// BenchmarkRequest measures signed request/response round trips per second
// between two hosts on loopback (TCP and QUIC listening, as a real node),
// with idle streams reused (the default) and with a new stream per request,
// each with 1 and 64 concurrent callers. Each round trip seals and opens
// two envelopes (two ed25519 signatures and two verifications); the
// baseline measured in the same run, "crypto", does exactly that work
// in-process with the same concurrency and no network, so x-crypto is the
// fraction of the crypto-bound maximum the network path reaches.
// cpu-us/req is process CPU per round trip (both ends run here).
func BenchmarkRequest(b *testing.B) {
	for _, tc := range []struct {
		name string
		idle int
		conc int
	}{
		{"reuse/c1", 32, 1}, {"new-stream/c1", 0, 1},
		{"reuse/c64", 64, 64}, {"new-stream/c64", 0, 64},
	} {
		b.Run(tc.name, func(b *testing.B) {
			mut := func(c *Config) { c.MaxIdleStreams = tc.idle }
			cl, srv := newHost(b, mut), newHost(b, mut)
			srv.Handle(protocol.ProtoHeartbeat, heartbeatHandler(nil))
			connect(b, cl, srv)
			ctx := context.Background()
			var seq atomic.Uint64
			call := func() error {
				var ack protocol.Ack
				return cl.Request(ctx, srv.ID(), protocol.ProtoHeartbeat, &protocol.Heartbeat{Worker: cl.ID(), Seq: seq.Add(1)}, &ack)
			}
			if err := call(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			c0 := cpuTime()
			rate := runConcurrent(b, b.N, tc.conc, call)
			cpu := cpuTime() - c0
			b.StopTimer()
			base := runConcurrent(b, max(200, b.N/4), tc.conc, cryptoRoundTrip(b, cl, srv))
			b.ReportMetric(rate, "req/s")
			b.ReportMetric(base, "crypto-rt/s")
			b.ReportMetric(rate/base, "x-crypto")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/req")
		})
	}
}

// runConcurrent calls f n times from conc goroutines and returns calls/s.
func runConcurrent(b *testing.B, n, conc int, f func() error) float64 {
	var next atomic.Int64
	done := make(chan error, conc)
	start := time.Now()
	for range conc {
		go func() {
			for next.Add(1) <= int64(n) {
				if err := f(); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range conc {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// cryptoRoundTrip does a round trip's signing and verification without
// the network: seal the request, open it, seal the reply, open it.
func cryptoRoundTrip(b *testing.B, cl, srv *Host) func() error {
	var seq atomic.Uint64
	return func() error {
		req, err := protocol.Seal(cl.Key(), &protocol.Heartbeat{Worker: cl.ID(), Seq: seq.Add(1)})
		if err != nil {
			return err
		}
		var hb protocol.Heartbeat
		if _, err := protocol.OpenAs(req, &hb); err != nil {
			return err
		}
		resp, err := protocol.Seal(srv.Key(), &protocol.Ack{OK: true, Count: uint32(hb.Seq)})
		if err != nil {
			return err
		}
		var ack protocol.Ack
		_, err = protocol.OpenAs(resp, &ack)
		return err
	}
}
