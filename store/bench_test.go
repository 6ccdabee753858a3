package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
)

const benchWriters = 64

// durableBurst performs n durable single-record writes spread over
// benchWriters goroutines and returns the achieved writes per second.
func durableBurst(b *testing.B, s *Store, n int, tag string) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	val := bytes.Repeat([]byte{0xab}, 100)
	start := time.Now()
	for range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				key := binary.BigEndian.AppendUint64([]byte(tag), uint64(i))
				if err := s.Durable(context.Background(), func(tx *Tx) error {
					return tx.Put("bench", key, val)
				}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

var baselineOnce struct {
	sync.Once
	rate float64
}

// BenchmarkDurableGroupCommit measures durable (fsynced) record writes per
// second with 64 concurrent writers through group commit, against the same
// writers with group commit disabled (MaxBatch 1: one fsync per write),
// measured in the same run.
func BenchmarkDurableGroupCommit(b *testing.B) {
	baselineOnce.Do(func() {
		base := openTest(b, "", func(c *Config) { c.MaxBatch = 1 })
		baselineOnce.rate = durableBurst(b, base, 3000, "base")
	})
	s := openTest(b, "", nil)
	b.ResetTimer()
	cpu0 := cpuTime()
	rate := durableBurst(b, s, b.N, fmt.Sprintf("run%d-", b.N))
	cpu := cpuTime() - cpu0
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(rate, "writes/s")
	b.ReportMetric(baselineOnce.rate, "one-sync-per-write/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(rate/baselineOnce.rate, "ratio")
	b.ReportMetric(float64(st.DurableWrites)/float64(max(st.Syncs, 1)), "writes/sync")
}

// BenchmarkSmallBlobs measures PutBlob of 1 KiB blobs from 64 concurrent
// writers (durable, group-committed, one key each).
func BenchmarkSmallBlobs(b *testing.B) {
	s := openTest(b, "", nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1024)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				binary.BigEndian.PutUint64(buf, uint64(i))
				binary.BigEndian.PutUint64(buf[8:], uint64(b.N))
				if _, err := s.PutBlob(buf); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "blobs/s")
}

// benchBlob is 256 MiB of pseudo-random bytes, made once.
var benchBlob = sync.OnceValue(func() []byte { return randBytes(42, 256<<20) })

// hashRate is the baseline: sha-256 over the blob in memory, in MB/s. Every
// byte written or read is hashed at least once, so this is the ceiling.
func hashRate(data []byte) float64 {
	start := time.Now()
	_ = sha256.Sum256(data)
	return float64(len(data)) / 1e6 / time.Since(start).Seconds()
}

// BenchmarkBlob256MiB streams a 256 MiB blob into the store (WriteBlob,
// verified, chunked, synced) and back out (OpenBlob, every chunk and the
// whole stream verified), reporting MB/s against a plain in-memory sha-256
// of the same bytes measured in the same run.
func BenchmarkBlob256MiB(b *testing.B) {
	data := benchBlob()
	c := protocol.BlobCID(data)
	b.Run("write", func(b *testing.B) {
		s := openTest(b, "", nil)
		base := hashRate(data)
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		var el time.Duration
		for range b.N {
			start := time.Now()
			if _, err := s.WriteBlob(context.Background(), c, bytes.NewReader(data), 0); err != nil {
				b.Fatal(err)
			}
			el += time.Since(start)
			b.StopTimer()
			if err := s.DeleteBlob(c); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		rate := float64(len(data)) * float64(b.N) / 1e6 / el.Seconds()
		b.ReportMetric(base, "sha256-MB/s")
		b.ReportMetric(rate/base, "ratio-to-sha256")
	})
	b.Run("read", func(b *testing.B) {
		s := openTest(b, "", nil)
		if _, err := s.WriteBlob(context.Background(), c, bytes.NewReader(data), 0); err != nil {
			b.Fatal(err)
		}
		base := hashRate(data)
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			r, err := s.OpenBlob(c)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, r); err != nil || n != int64(len(data)) {
				b.Fatalf("read %d bytes: %v", n, err)
			}
			_ = r.Close()
		}
		rate := float64(len(data)) * float64(b.N) / 1e6 / time.Since(start).Seconds()
		b.ReportMetric(base, "sha256-MB/s")
		b.ReportMetric(rate/base, "ratio-to-sha256")
	})
}

// cpuTime is the process's user+system CPU time so far; CPU per operation
// shows the cost of a write independently of how busy the machine is.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
