package protocol

import (
	"bytes"
	"testing"
)

// Every decoder of bytes from the network has a fuzz target. Each checks
// that decoding never panics and that whatever decodes re-encodes to the
// exact same bytes (the encoding is canonical).

func fuzzBody(f *testing.F, m Message) {
	f.Add(Encode(m))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := newOf(m)
		if err := Decode(b, got); err != nil {
			return
		}
		if re := Encode(got); !bytes.Equal(re, b) {
			t.Fatalf("non-canonical: %x re-encodes as %x", b, re)
		}
	})
}

func FuzzRating(f *testing.F)     { fuzzBody(f, sampleMessages(f)["rating"]) }
func FuzzOffer(f *testing.F)      { fuzzBody(f, sampleMessages(f)["offer"]) }
func FuzzBid(f *testing.F)        { fuzzBody(f, sampleMessages(f)["bid"]) }
func FuzzRegister(f *testing.F)   { fuzzBody(f, sampleMessages(f)["register"]) }
func FuzzSubmit(f *testing.F)     { fuzzBody(f, sampleMessages(f)["submit"]) }
func FuzzAssignment(f *testing.F) { fuzzBody(f, sampleMessages(f)["assignment"]) }
func FuzzReceipt(f *testing.F)    { fuzzBody(f, sampleMessages(f)["receipt"]) }
func FuzzHeartbeat(f *testing.F)  { fuzzBody(f, sampleMessages(f)["heartbeat"]) }
func FuzzRelease(f *testing.F)    { fuzzBody(f, sampleMessages(f)["release"]) }
func FuzzCancel(f *testing.F)     { fuzzBody(f, sampleMessages(f)["cancel"]) }
func FuzzStatement(f *testing.F)  { fuzzBody(f, sampleMessages(f)["statement"]) }
func FuzzStatementRequest(f *testing.F) {
	fuzzBody(f, sampleMessages(f)["statement-request"])
}
func FuzzAck(f *testing.F) { fuzzBody(f, sampleMessages(f)["ack"]) }

func FuzzEnvelope(f *testing.F) {
	key, _ := testKey(f, 9)
	for _, m := range sampleMessages(f) {
		s, _ := Seal(key, m)
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Open(b)
		if err != nil {
			return
		}
		// A valid envelope's body decodes into its type or fails cleanly.
		for _, m := range sampleMessages(t) {
			if m.Type() == e.Type {
				_ = e.Decode(newOf(m))
			}
		}
	})
}

func FuzzOutput(f *testing.F) {
	f.Add(EncodeOutput(&Output{Status: StatusTrap, Message: "unreachable", Stdout: []byte("x")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := DecodeOutput(b)
		if err != nil {
			return
		}
		if re := EncodeOutput(o); !bytes.Equal(re, b) {
			t.Fatalf("non-canonical output")
		}
	})
}

func FuzzBlobRequest(f *testing.F) {
	f.Add(EncodeBlobRequest(&BlobRequest{CID: BlobCID([]byte("x")).Bytes(), Offset: 1, Length: 2}))
	f.Add(EncodeBlobRequest(&BlobRequest{CID: BlobCID([]byte("x")).Bytes(), Group: ID{1}, Task: 7, Ticket: []byte("sealed")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := DecodeBlobRequest(b)
		if err != nil {
			return
		}
		if re := EncodeBlobRequest(q); !bytes.Equal(re, b) {
			t.Fatalf("non-canonical blob request")
		}
	})
}

func FuzzBlobResponse(f *testing.F) {
	f.Add(EncodeBlobResponse(&BlobResponse{Status: BlobOK, Size: 10, Length: 5}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := DecodeBlobResponse(b); err != nil {
			return
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ReadFrame(bytes.NewReader(b), 64)
	})
}
