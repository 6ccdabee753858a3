package p2p

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
)

// BenchmarkRequest measures signed request/response round trips per second
// between two hosts on loopback, with streams reused (the default) and
// with a new stream per request (the baseline), each with 1 and 64
// concurrent callers.
func BenchmarkRequest(b *testing.B) {
	for _, tc := range []struct {
		name string
		idle int
		conc int
	}{
		{"new-stream/c1", 0, 1}, {"reuse/c1", 32, 1},
		{"new-stream/c64", 0, 64}, {"reuse/c64", 64, 64},
	} {
		b.Run(tc.name, func(b *testing.B) {
			mut := func(c *Config) { c.MaxIdleStreams = tc.idle; c.ListenAddrs = c.ListenAddrs[:1] }
			cl, srv := newHost(b, mut), newHost(b, mut)
			srv.Handle(protocol.ProtoHeartbeat, heartbeatHandler(nil))
			connect(b, cl, srv)
			ctx := context.Background()
			var seq atomic.Uint64
			b.ResetTimer()
			start := time.Now()
			var next atomic.Int64
			done := make(chan error, tc.conc)
			for range tc.conc {
				go func() {
					for next.Add(1) <= int64(b.N) {
						var ack protocol.Ack
						if err := cl.Request(ctx, srv.ID(), protocol.ProtoHeartbeat, &protocol.Heartbeat{Worker: cl.ID(), Seq: seq.Add(1)}, &ack); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
			}
			for range tc.conc {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}
