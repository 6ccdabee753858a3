// Package protocol is Aspen's contract: the wire messages every peer
// exchanges, their one canonical binary encoding, signing and verification
// with libp2p peer keys, blob CIDs, money and speed units, topic and stream
// protocol names and size limits. It imports no other Aspen package; every
// other package builds on it. SPEC.md describes the same things in prose.
package protocol
