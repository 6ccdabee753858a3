package p2p

import (
	"bytes"
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
)

// BenchmarkBlobTransfer moves a 256 MiB blob between two hosts on loopback
// with FetchBlob and, as baselines measured in the same run, over raw Go
// TCP (net.Listen on 127.0.0.1:0, io.Copy):
//
//   - tcp: io.Copy from the same BlobSource reader the blob server reads
//     (32 KiB writes), into the same sink: "the blob over bare TCP";
//   - tcp1w: io.Copy from a bytes.Reader (one 256 MiB write), same sink.
//
// Every sink hashes the bytes (as the store does), so the ratios show what
// libp2p (TLS, yamux, resource accounting) costs for a verified transfer.
// cpu-ratio compares process CPU time (both ends run in this process).
// The machine may be shared, and interference only ever slows a run down,
// so rates are the best of the b.N interleaved runs of each method.
// Sub-benchmark "default" listens on TCP and QUIC as a real node does;
// "quic" forces QUIC. Run with -benchtime=1x (or 3x).
func BenchmarkBlobTransfer(b *testing.B) {
	const size = 256 << 20
	data := randBytes(b, size)
	c := protocol.BlobCID(data)
	st := newMemStore()
	st.put(data)
	for _, tr := range []struct {
		name  string
		addrs []string
	}{
		{"default", []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}},
		{"quic", []string{"/ip4/127.0.0.1/udp/0/quic-v1"}},
	} {
		b.Run(tr.name, func(b *testing.B) {
			mut := func(cfg *Config) { cfg.ListenAddrs = tr.addrs }
			srv := newHost(b, func(cfg *Config) { mut(cfg); cfg.Blobs = st })
			cl := newHost(b, mut)
			connect(b, cl, srv)
			for _, conn := range cl.Libp2p().Network().ConnsToPeer(srv.ID()) {
				b.Logf("connection: %s", conn.RemoteMultiaddr())
			}
			b.SetBytes(size)
			b.ResetTimer()
			var p2p, tcp, tcp1 measure
			for range b.N {
				p2p.run(func() {
					n, err := cl.FetchBlob(context.Background(), c, []peer.ID{srv.ID()}, discardSink{}, size)
					if err != nil || n != size {
						b.Fatal(n, err)
					}
				})
				b.StopTimer()
				tcp.run(func() {
					r, err := st.ReadBlob(c)
					if err != nil {
						b.Fatal(err)
					}
					tcpTransfer(b, io.NewSectionReader(r, 0, size), c, size)
				})
				tcp1.run(func() { tcpTransfer(b, bytes.NewReader(data), c, size) })
				b.StartTimer()
			}
			mb := func(m measure) float64 { return float64(size) / m.best.Seconds() / 1e6 }
			b.ReportMetric(mb(p2p), "p2p-MB/s")
			b.ReportMetric(mb(tcp), "tcp-MB/s")
			b.ReportMetric(mb(tcp1), "tcp1w-MB/s")
			b.ReportMetric(mb(p2p)/mb(tcp), "ratio")
			b.ReportMetric(mb(p2p)/mb(tcp1), "ratio-1w")
			b.ReportMetric(tcp.cpu.Seconds()/p2p.cpu.Seconds(), "cpu-ratio")
		})
	}
}

// measure keeps the best wall time and the total process CPU time.
type measure struct{ best, cpu time.Duration }

func (m *measure) run(f func()) {
	c0, t0 := cpuTime(), time.Now()
	f()
	if d := time.Since(t0); m.best == 0 || d < m.best {
		m.best = d
	}
	m.cpu += cpuTime() - c0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tcpTransfer sends src over a fresh loopback TCP connection with io.Copy
// into the same hashing sink the blob benchmark uses.
func tcpTransfer(b *testing.B, src io.Reader, c cid.Cid, size int64) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	errc := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			errc <- err
			return
		}
		_, err = io.Copy(conn, src)
		conn.Close()
		errc <- err
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	n, err := discardSink{}.WriteBlob(context.Background(), c, conn, size)
	if err != nil || n != size {
		b.Fatal(n, err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}
