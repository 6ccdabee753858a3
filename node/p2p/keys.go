package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxKeyFile bounds a key file read from disk.
const maxKeyFile = 4096

// LoadOrCreateKey loads the ed25519 private key stored at path (libp2p's
// protobuf key encoding), or creates one there with mode 0600 if the file
// does not exist. It refuses a key file that group or others can read or
// write (fix it with chmod 600), a key that is not ed25519, and anything
// unparsable. Creation is atomic: two processes racing end up with the
// same key.
func LoadOrCreateKey(path string) (crypto.PrivKey, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty path", ErrKeyFile)
	}
	k, err := loadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: generate: %v", ErrKeyFile, err)
	}
	raw, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: marshal: %v", ErrKeyFile, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("%w: write: %v", ErrKeyFile, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("%w: sync: %v", ErrKeyFile, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	// Link never overwrites: if another process won the race, use its key.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKey(path)
		}
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return priv, nil
}

func loadKey(path string) (crypto.PrivKey, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFile, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, group/others may access it; run chmod 600 %s", ErrKeyFile, path, perm, path)
	}
	if st.Size() > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrKeyFile, path, st.Size())
	}
	raw := make([]byte, st.Size())
	if _, err := f.ReadAt(raw, 0); err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrKeyFile, path, err)
	}
	k, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeyFile, path, err)
	}
	if k.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: %s holds a %s key, want ed25519", ErrKeyFile, path, k.Type())
	}
	return k, nil
}

// ParseAddrInfo parses "/ip4/…/tcp/…/p2p/<id>" (a multiaddr ending in the
// peer ID) or a bare peer ID into an AddrInfo.
func ParseAddrInfo(s string) (peer.AddrInfo, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return peer.AddrInfo{}, fmt.Errorf("%w: empty", ErrBadAddr)
	}
	if !strings.HasPrefix(s, "/") {
		id, err := peer.Decode(s)
		if err != nil {
			return peer.AddrInfo{}, fmt.Errorf("%w: %q: %v", ErrBadAddr, s, err)
		}
		return peer.AddrInfo{ID: id}, nil
	}
	pi, err := peer.AddrInfoFromString(s)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%w: %q: %v", ErrBadAddr, s, err)
	}
	return *pi, nil
}
