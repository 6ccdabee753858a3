// Package p2p is Aspen's networking layer, shared by aspen-node (workers and
// consumers) and aspen-verifier. It owns:
//
//   - the libp2p host: identity from an ed25519 key, TCP and QUIC
//     transports, TLS and Noise security, yamux, a resource manager with
//     explicit limits for Aspen protocols, a connection manager that
//     protects pinned (verifier) peers, bootstrap with backoff and
//     reconnection of pinned peers;
//   - gossip (gossipsub) of offers and bids, with a topic validator that
//     checks size, envelope signature, signer == message author (pubsub
//     messages carry no author of their own: StrictNoSign), topic/type
//     match, expiry, per-signer sequence numbers
//     (replays) and a per-signer rate limit, and peer scoring that
//     penalises peers sending invalid messages;
//   - the blob protocol (ProtoBlob): a server reading ranges from a
//     BlobSource for the peers a BlobAuthFunc allows, and a client (FetchBlob) that streams a blob into a
//     BlobSink, chunked, resumable, from several peers in parallel, and
//     verified against its CID;
//   - NAT traversal: AutoNAT v1 and v2, circuit relay v2 (client, and a
//     limited relay service when configured), autorelay on static relays,
//     DCUtR hole punching, and a reachability summary (Reachability,
//     PathTo); blobs take a relayed connection only within its limits;
//   - signed request/response streams (Handle, Request) carrying the
//     per-task traffic between nodes and the verifier.
//
// It does not interpret messages beyond what the transport needs: market
// rules, ledgers and job execution live elsewhere. docs/p2p.md describes the
// wire behaviour in prose.
package p2p
