// Package store is Aspen's local persistent store, used by nodes and by the
// verifier. It owns one badger/v4 database per process and offers two things:
//
//   - Content-addressed blobs (job modules, inputs, results) keyed by their
//     CID (protocol.BlobCID: CIDv1, raw, sha2-256). Bytes are checked against
//     the CID on the way in and on the way out; a mismatch is an error, never
//     data. Small blobs are one key written in one transaction; large blobs
//     are files next to the database, written in fixed-size chunks whose
//     CRC-32C is recorded in the blob's metadata so ranged reads check every
//     chunk they return against what was verified on the way in. Streamed
//     writes (WriteBlob) become visible only once the whole stream hashed to
//     the expected CID and the file is synced.
//
//   - Namespaced records: a small key/value API (Put, Get, Delete, Scan) and
//     atomic multi-record transactions (Update, View) for the node's and the
//     verifier's own state, plus Durable, a group-committed transaction that
//     returns only once its writes are on stable storage. Many concurrent
//     Durable callers share one fsync.
//
// Crash safety: everything a method has returned success for survives kill -9
// of the process. Durable, PutBlob, PutBlobVerified and WriteBlob additionally
// survive an OS crash or power loss (they return only after fsync). Put,
// Delete, Update and DeleteBlob are not synced by themselves; call Sync, or use
// Durable, when power-loss durability matters. See docs/store.md.
package store
