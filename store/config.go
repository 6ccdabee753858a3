package store

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Config configures a Store. Start from DefaultConfig and set Dir.
type Config struct {
	// Dir is the database directory; it is created if missing. Required.
	Dir string
	// Logger receives the store's and badger's log lines. nil discards them.
	Logger *slog.Logger

	// ChunkSize is the unit in which a large blob (a file) is written and
	// checked: each chunk has its own CRC-32C, checked by every read that
	// touches it. Existing blobs keep the chunk size they were written
	// with.
	ChunkSize int
	// InlineMax is the largest blob stored inline: one key, one value, one
	// transaction. Must be ≤ ChunkSize.
	InlineMax int
	// MaxBlobSize bounds PutBlob and WriteBlob (when called with maxSize ≤ 0).
	MaxBlobSize int64
	// MaxGetBlobSize bounds GetBlob, which returns a whole blob in memory;
	// larger blobs must be read with OpenBlob.
	MaxGetBlobSize int64
	// MaxRecordSize bounds the value of one record.
	MaxRecordSize int

	// MaxBatch is the most Durable callers group-committed together under
	// one fsync. 1 disables group commit (one sync per write).
	MaxBatch int

	// ValueLogGCInterval is how often the value log is garbage collected to
	// reclaim the space of deleted blobs. 0 disables the background GC.
	ValueLogGCInterval time.Duration
	// TrimInterval is how often the pages of value-log files (blob data,
	// mmap'd by badger) are released from the process's resident set, so
	// an idle node stays small after moving large blobs. They are also
	// released after each large blob written or read to the end. 0
	// disables trimming. Linux only.
	TrimInterval time.Duration

	// Badger sizing. The defaults keep an idle node small (tens of MiB);
	// the verifier may raise them.
	MemTableSize     int64 // bytes per memtable
	NumMemtables     int   // memtables kept in memory (active + immutable)
	BlockCacheSize   int64 // bytes of block cache
	IndexCacheSize   int64 // bytes of table index cache
	ValueLogFileSize int64 // bytes per value-log file
	ValueThreshold   int64 // values at least this big go to the value log
	BaseTableSize    int64 // bytes per L0/L1 table
	NumCompactors    int   // 0 or ≥ 2 (badger refuses 1)
}

// DefaultConfig returns the configuration for a small node: 1 MiB chunks,
// blobs up to 64 KiB inline, 8 MiB memtables, small caches.
func DefaultConfig() Config {
	return Config{
		ChunkSize:          1 << 20,
		InlineMax:          64 << 10,
		MaxBlobSize:        16 << 30,
		MaxGetBlobSize:     1 << 30,
		MaxRecordSize:      16 << 20,
		MaxBatch:           256,
		ValueLogGCInterval: 10 * time.Minute,
		TrimInterval:       30 * time.Second,
		MemTableSize:       8 << 20,
		NumMemtables:       2,
		BlockCacheSize:     8 << 20,
		IndexCacheSize:     4 << 20,
		ValueLogFileSize:   16 << 20,
		ValueThreshold:     8 << 10,
		BaseTableSize:      2 << 20,
		NumCompactors:      2,
	}
}

const (
	minChunkSize = 4 << 10
	maxChunkSize = 64 << 20
)

// Validate reports the first problem with c, wrapping ErrInvalid.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: config: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Dir == "":
		return bad("Dir is required")
	case c.ChunkSize < minChunkSize || c.ChunkSize > maxChunkSize:
		return bad("ChunkSize %d outside [%d, %d]", c.ChunkSize, minChunkSize, maxChunkSize)
	case c.InlineMax < 0 || c.InlineMax > c.ChunkSize:
		return bad("InlineMax %d outside [0, ChunkSize]", c.InlineMax)
	case c.MaxBlobSize <= 0:
		return bad("MaxBlobSize must be positive")
	case c.MaxGetBlobSize <= 0:
		return bad("MaxGetBlobSize must be positive")
	case c.MaxRecordSize <= 0:
		return bad("MaxRecordSize must be positive")
	case c.MaxBatch < 1:
		return bad("MaxBatch must be ≥ 1")
	case c.ValueLogGCInterval < 0:
		return bad("ValueLogGCInterval must not be negative")
	case c.TrimInterval < 0:
		return bad("TrimInterval must not be negative")
	case c.MemTableSize < 1<<20:
		return bad("MemTableSize must be ≥ 1 MiB")
	case c.NumMemtables < 1:
		return bad("NumMemtables must be ≥ 1")
	case c.BlockCacheSize < 1<<20:
		return bad("BlockCacheSize must be ≥ 1 MiB (tables are compressed)")
	case c.IndexCacheSize < 0:
		return bad("IndexCacheSize must not be negative")
	case c.ValueLogFileSize < 1<<20 || c.ValueLogFileSize >= 2<<30:
		return bad("ValueLogFileSize must be in [1 MiB, 2 GiB)")
	case int64(c.ChunkSize) >= c.ValueLogFileSize:
		return bad("ChunkSize must be smaller than ValueLogFileSize")
	case c.ValueThreshold < 64 || c.ValueThreshold > c.MemTableSize*15/100 || c.ValueThreshold > 1<<20:
		return bad("ValueThreshold %d outside [64, min(1 MiB, 15%% of MemTableSize)]", c.ValueThreshold)
	case c.BaseTableSize < 256<<10:
		return bad("BaseTableSize must be ≥ 256 KiB")
	case c.NumCompactors == 1 || c.NumCompactors < 0:
		return bad("NumCompactors must be 0 or ≥ 2")
	}
	return nil
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// badgerOptions maps c onto badger options. SyncWrites stays false: the
// store syncs explicitly (see sync.go and docs/store.md).
func (c Config) badgerOptions(log *slog.Logger) badger.Options {
	return badger.DefaultOptions(c.Dir).
		WithLogger(badgerLogger{log: log.With("component", "badger")}).
		WithSyncWrites(false).
		WithMetricsEnabled(false).
		WithMemTableSize(c.MemTableSize).
		WithNumMemtables(c.NumMemtables).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(c.BlockCacheSize).
		WithIndexCacheSize(c.IndexCacheSize).
		WithValueLogFileSize(c.ValueLogFileSize).
		WithValueThreshold(c.ValueThreshold).
		WithBaseTableSize(c.BaseTableSize).
		WithBaseLevelSize(4 * c.BaseTableSize).
		WithNumCompactors(c.NumCompactors).
		WithNumGoroutines(2).
		WithCompression(options.Snappy).
		// Every write that can touch a shared key goes through the
		// committer (one writer), so badger's conflict tracking would only
		// cost time; blob chunks and upload markers use unique keys.
		WithDetectConflicts(false)
}
