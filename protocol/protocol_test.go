package protocol

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// testKey returns a deterministic ed25519 key so golden vectors are stable
// (ed25519 signatures are deterministic).
func testKey(t testing.TB, seed byte) (crypto.PrivKey, peer.ID) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
	k, err := crypto.UnmarshalEd25519PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func sampleMessages(t testing.TB) map[string]Message {
	_, w := testKey(t, 1)
	_, c := testKey(t, 2)
	in := []byte("1 1000")
	out := EncodeOutput(&Output{Status: StatusOK, Stdout: []byte("168\n")})
	grp := ID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	mod := BlobCID([]byte("\x00asm module"))
	return map[string]Message{
		"rating":   &Rating{Worker: w, Speed: 1250, ReliabilityPPM: 990_000, Strikes: 1, Issued: 1_700_000_000_000, Expires: 1_700_086_400_000},
		"offer":    &Offer{Worker: w, Seq: 7, MinPrice: 20_000, Capacity: 2, Slots: 4, Rating: []byte{1, 2, 3}, Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}, Expires: 1_700_000_060_000},
		"bid":      &Bid{Consumer: c, Group: grp, Seq: 1, Module: mod, Tasks: 1000, MaxPrice: 40_000, MinSpeed: 1000, Replicas: 2, Expires: 1_700_000_060_000},
		"register": &Register{Worker: w, Owner: "alice", MinPrice: 20_000, Slots: 4, Addrs: []string{"/ip4/127.0.0.1/udp/4001/quic-v1"}, Nonce: grp, Time: 1_700_000_000_000},
		"submit": &Submit{Consumer: c, Group: grp, Module: mod, ModuleSize: 11, MaxPrice: 40_000, MinSpeed: 1000, Replicas: 2, TimeoutMillis: 7_200_000, MaxMemory: 256 << 20,
			Addrs: []string{"/ip4/127.0.0.1/tcp/4002"}, Time: 1_700_000_000_000,
			Tasks: []TaskInput{{Index: 0, Input: BlobCID(in), Size: uint64(len(in)), Inline: in}, {Index: 1, Input: BlobCID([]byte("big")), Size: 1 << 20}}},
		"assignment": &Assignment{ID: grp, Worker: w, Consumer: c, ConsumerAddrs: []string{"/ip4/127.0.0.1/tcp/4002"}, Group: grp, Module: mod, ModuleSize: 11, Price: 20_000,
			TimeoutMillis: 7_200_000, MaxMemory: 256 << 20, Issued: 1_700_000_000_000, Expires: 1_700_000_030_000,
			Tasks: []AssignedTask{{Index: 0, Replica: 1, Input: BlobCID(in), Size: uint64(len(in)), Inline: in}}},
		"receipt":   &Receipt{Worker: w, Assignment: grp, Group: grp, Results: []TaskResult{{Index: 0, Replica: 1, Status: StatusOK, Result: BlobCID(out), ResultSize: uint64(len(out)), ExecMicros: 1234, Work: 987654321, Inline: out}}},
		"heartbeat": &Heartbeat{Worker: w, Seq: 3, Time: 1_700_000_000_000, Capacity: 3, Holding: []ID{grp}},
		"release": &Release{Group: grp, Seq: 2, Tasks: []Released{
			{Index: 0, Outcome: OutcomeVerified, Status: StatusOK, Result: BlobCID(out), ResultSize: uint64(len(out)), Holders: []peer.ID{w}, Inline: out, Charged: 12, Replicas: 2},
			{Index: 1, Outcome: OutcomeFailed, Reason: "no eligible workers"}}},
		"cancel":            &Cancel{Consumer: c, Group: grp, Time: 1_700_000_000_000},
		"statement-request": &StatementRequest{Peer: c, Nonce: grp, Time: 1_700_000_000_000},
		"statement":         &Statement{Peer: c, Nonce: grp, Balance: 9_000_000, Escrow: 40_000, Spent: 120, Issued: 1_700_000_000_000},
		"ack":               &Ack{Ref: grp, OK: false, Code: AckInsufficientFunds, Error: "balance 0.01 below escrow 0.04", Count: 0},
	}
}

func newOf(m Message) Message {
	return reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message)
}

func TestRoundTripAndGolden(t *testing.T) {
	key, signer := testKey(t, 9)
	for name, m := range sampleMessages(t) {
		t.Run(name, func(t *testing.T) {
			sealed, err := Seal(key, m)
			if err != nil {
				t.Fatal(err)
			}
			got := newOf(m)
			from, err := OpenAs(sealed, got)
			if err != nil {
				t.Fatal(err)
			}
			if from != signer {
				t.Fatalf("signer %s, want %s", from, signer)
			}
			if !reflect.DeepEqual(normalize(got), normalize(m)) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, m)
			}
			if !bytes.Equal(Encode(got), Encode(m)) {
				t.Fatal("re-encoding differs")
			}
			golden := filepath.Join("testdata", name+".hex")
			if *update {
				if err := os.WriteFile(golden, []byte(hex.EncodeToString(sealed)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./protocol -run Golden -update)", err)
			}
			if strings.TrimSpace(string(want)) != hex.EncodeToString(sealed) {
				t.Fatalf("encoding of %s changed; golden %s pins it", name, golden)
			}
		})
	}
}

// normalize maps nil and empty slices to the same thing for comparison.
func normalize(m Message) []byte { return Encode(m) }

func TestTamperedAndForged(t *testing.T) {
	key, _ := testKey(t, 9)
	other, _ := testKey(t, 10)
	m := sampleMessages(t)["assignment"]
	sealed, err := Seal(key, m)
	if err != nil {
		t.Fatal(err)
	}
	// Flip every byte in turn: never accepted as a valid, different message.
	for i := range sealed {
		b := bytes.Clone(sealed)
		b[i] ^= 0x40
		if _, err := Open(b); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	// A signature by another key over the same body, claiming the first signer.
	forged, _ := Seal(other, m)
	e1, _ := Open(sealed)
	e2, _ := Open(forged)
	w := writer{}
	w.u8(Version)
	w.u8(uint8(e1.Type))
	w.peer(e1.Signer)
	w.bytes(e1.Body)
	w.bytes(e2.Sig)
	if _, err := Open(w.b); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged signature: %v", err)
	}
	// Wrong type requested.
	if _, err := OpenAs(sealed, &Receipt{}); !errors.Is(err, ErrWrongType) {
		t.Fatalf("wrong type: %v", err)
	}
	// Trailing bytes.
	if _, err := Open(append(bytes.Clone(sealed), 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	_, w := testKey(t, 1)
	bad := map[string]Message{
		"inline mismatch": &Submit{Consumer: w, Module: BlobCID(nil), Replicas: 2, TimeoutMillis: 1, Tasks: []TaskInput{{Input: BlobCID([]byte("a")), Size: 1, Inline: []byte("b")}}},
		"zero replicas":   &Bid{Consumer: w, Module: BlobCID(nil), Replicas: 0},
		"negative price":  &Offer{Worker: w, MinPrice: -1},
		"capacity>slots":  &Offer{Worker: w, Capacity: 5, Slots: 4},
		"zero timeout":    &Assignment{Worker: w, Module: BlobCID(nil)},
		"ack ok/code":     &Ack{OK: true, Code: AckBusy},
	}
	for name, m := range bad {
		if err := Decode(Encode(m), newOf(m)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: decode accepted: %v", name, err)
		}
	}
}

func TestOutputRoundTrip(t *testing.T) {
	o := &Output{Status: StatusExit, ExitCode: 3, Message: "", Stdout: []byte("x"), Stderr: []byte("bad input\n")}
	b := EncodeOutput(o)
	got, err := DecodeOutput(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, o) {
		t.Fatalf("got %#v", got)
	}
	if _, err := DecodeOutput(b[:len(b)-1]); err == nil {
		t.Fatal("truncated output accepted")
	}
}

func TestUnits(t *testing.T) {
	for in, want := range map[string]Micros{"0.04": 40_000, "12": 12_000_000, "1.5": 1_500_000, ".5": 500_000, "0.000001": 1} {
		got, err := ParseAmount(in)
		if err != nil || got != want {
			t.Errorf("ParseAmount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1e3", "0.0000001", "1.", "abc", "99999999999999999999"} {
		if _, err := ParseAmount(in); !errors.Is(err, ErrBadAmount) {
			t.Errorf("ParseAmount(%q) accepted", in)
		}
	}
	if s := Micros(40_000).String(); s != "0.04" {
		t.Errorf("String = %q", s)
	}
	if s := Micros(-1).String(); s != "-0.000001" {
		t.Errorf("String = %q", s)
	}
	for in, want := range map[string]Speed{"1.0": 1000, "0.25": 250, "2": 2000} {
		if got, err := ParseSpeed(in); err != nil || got != want {
			t.Errorf("ParseSpeed(%q) = %d, %v", in, got, err)
		}
	}
	if s := Speed(250).String(); s != "0.25" {
		t.Errorf("Speed.String = %q", s)
	}
}

func TestBlobWire(t *testing.T) {
	c := BlobCID([]byte("x"))
	for _, q := range []*BlobRequest{
		{CID: c.Bytes(), Offset: 5, Length: 10},
		{CID: c.Bytes(), Group: ID{9}, Task: 4, Ticket: []byte("sealed assignment")},
	} {
		got, err := DecodeBlobRequest(EncodeBlobRequest(q))
		if err != nil || !reflect.DeepEqual(got, q) {
			t.Fatalf("%v %v", got, err)
		}
	}
	p := &BlobResponse{Status: BlobOK, Size: 100, Length: 10}
	gp, err := DecodeBlobResponse(EncodeBlobResponse(p))
	if err != nil || *gp != *p {
		t.Fatalf("%v %v", gp, err)
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFrame(&buf, 10)
	if err != nil || string(f) != "hello" {
		t.Fatal(f, err)
	}
	buf.Reset()
	_ = WriteFrame(&buf, make([]byte, 20))
	if _, err := ReadFrame(&buf, 10); !errors.Is(err, ErrTooLarge) {
		t.Fatal(err)
	}
}

// TestReadFrameGrowsWithTheBytes: frames across the sizes where the read
// buffer grows come back whole, and a frame that announces the largest
// size and then ends fails as malformed without holding that much memory.
func TestReadFrameGrowsWithTheBytes(t *testing.T) {
	for _, n := range []int{0, 1, frameStart - 1, frameStart, frameStart + 1, 3*frameStart + 5, MaxMessageSize} {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(i*13 + 1)
		}
		var buf bytes.Buffer
		if err := WriteFrame(&buf, body); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFrame(&buf, MaxMessageSize)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("frame of %d bytes: %d bytes back, err %v", n, len(got), err)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 16 {
		in := append([]byte{0, 0x40, 0, 0}, make([]byte, 1000)...) // 4 MiB announced, 1000 bytes sent
		if _, err := ReadFrame(bytes.NewReader(in), MaxMessageSize); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated frame: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Errorf("16 truncated frames announcing 4 MiB each allocated %d KiB", got>>10)
	}
}

func BenchmarkSealOpenAssignment(b *testing.B) {
	key, _ := testKey(b, 9)
	m := sampleMessages(b)["assignment"]
	b.ReportAllocs()
	for b.Loop() {
		s, err := Seal(key, m)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := OpenAs(s, &Assignment{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEnvelopeBytes(t *testing.T) {
	key, _ := testKey(t, 9)
	sealed, err := Seal(key, sampleMessages(t)["receipt"])
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(EnvelopeBytes(e), sealed) {
		t.Fatal("EnvelopeBytes differs from the sealed bytes")
	}
}

func TestParseID(t *testing.T) {
	id := NewID()
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(%s) = %s, %v", id, got, err)
	}
	for _, bad := range []string{"", "xyz", strings.Repeat("g", 32), strings.Repeat("a", 31)} {
		if _, err := ParseID(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}
