package verifier

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
)

// taskRecordFixture is a settled task record (2 replicas, inline output)
// as the verifier wrote it in JSON before records became binary.
func taskRecordFixture(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/task_record_json.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assignmentRecordFixture is an open assignment of 64 tasks with a
// realistic sealed size.
func assignmentRecordFixture() *assignmentRecord {
	a := &assignmentRecord{ID: "4a178ecfd7be56aa730eed80a35e44c3", Worker: "12D3KooWEeL2MbzLp8CHZgvHYVC2GM9YctsVanAqnr5eMdxUCoU3",
		Group: "bfa467fd35ca264b0aaf0de5a7deb7c5", Issued: 1795487760405, Expires: 1795487820405, Acked: true}
	for i := range 64 {
		a.Tasks = append(a.Tasks, taskRef{Index: uint32(i), Replica: 1})
	}
	a.Sealed = bytes.Repeat([]byte{0xa5, 0x17, 0x00, 0x42}, 64*100/4)
	return a
}

// fill sets every exported field reachable from v to random values; full
// makes every pointer non-nil, every slice non-empty and every scalar
// non-zero, so a field the codec forgets cannot round-trip by luck.
func fill(t testing.TB, v reflect.Value, rng *rand.Rand, full bool) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), rng, full)
			}
		}
	case reflect.Pointer:
		if !full && rng.IntN(4) == 0 {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), rng, full)
		v.Set(p)
	case reflect.Slice:
		n := rng.IntN(4)
		if full {
			n++
		}
		if n == 0 {
			v.SetZero() // empty reads back as nil
			return
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fill(t, s.Index(i), rng, full)
		}
		v.Set(s)
	case reflect.String:
		n := rng.IntN(8)
		if rng.IntN(8) == 0 {
			n = 200 // two-byte length
		}
		if full {
			n++
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		v.SetString(string(b))
	case reflect.Map:
		n := rng.IntN(3)
		if full {
			n++
		}
		if n == 0 {
			v.SetZero() // empty reads back as nil
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), n)
		for range n {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(t, k, rng, true)
			fill(t, e, rng, full)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Bool:
		v.SetBool(full || rng.IntN(2) == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := v.Type().Bits()
		var x int64
		switch rng.IntN(5) {
		case 0:
			x = -1 << (bits - 1) // the minimum
		case 1:
			x = 1<<(bits-1) - 1 // the maximum
		case 2:
			x = rng.Int64N(300) - 150
		default:
			x = int64(rng.Uint64()) >> (64 - bits)
		}
		if full && x == 0 {
			x = 1
		}
		v.SetInt(x)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		bits := v.Type().Bits()
		var x uint64
		switch rng.IntN(4) {
		case 0:
			x = math.MaxUint64 >> (64 - bits)
		case 1:
			x = rng.Uint64N(300)
		default:
			x = rng.Uint64() >> (64 - bits)
		}
		if full && x == 0 {
			x = 1
		}
		v.SetUint(x)
	default:
		t.Fatalf("fill: a field of kind %s (%s): teach recordcodec.go and this test about it", v.Kind(), v.Type())
	}
}

// alignReplicas gives r one replica entry per run, as every task record
// has (the decoder refuses any other).
func alignReplicas(r *taskRecord) {
	if r.M == nil {
		return
	}
	for len(r.Replicas) < len(r.M.Runs) {
		r.Replicas = append(r.Replicas, replicaInfo{Assignment: "padded"})
	}
	r.Replicas = r.Replicas[:len(r.M.Runs)]
	if len(r.Replicas) == 0 {
		r.Replicas = nil // an empty slice reads back as nil
	}
}

// TestRecordCodecRoundTrip: every field of the task and assignment records
// (and of the market structs inside) survives encode then decode.
func TestRecordCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		full := i%2 == 0
		var tr taskRecord
		fill(t, reflect.ValueOf(&tr).Elem(), rng, full)
		alignReplicas(&tr)
		var gotT taskRecord
		if err := decodeTaskRecord(encodeTaskRecord(&tr), &gotT); err != nil {
			t.Fatalf("task record %d: %v", i, err)
		}
		if !reflect.DeepEqual(gotT, tr) {
			t.Fatalf("task record %d round trip:\n got %+v\nwant %+v", i, gotT, tr)
		}
		var ar assignmentRecord
		fill(t, reflect.ValueOf(&ar).Elem(), rng, full)
		var gotA assignmentRecord
		if err := decodeAssignmentRecord(encodeAssignmentRecord(&ar), &gotA); err != nil {
			t.Fatalf("assignment record %d: %v", i, err)
		}
		if !reflect.DeepEqual(gotA, ar) {
			t.Fatalf("assignment record %d round trip:\n got %+v\nwant %+v", i, gotA, ar)
		}
	}
	// Zero records (every optional part absent).
	var tr taskRecord
	if err := decodeTaskRecord(encodeTaskRecord(&taskRecord{}), &tr); err != nil || !reflect.DeepEqual(tr, taskRecord{}) {
		t.Fatalf("zero task record: %+v %v", tr, err)
	}
	var ar assignmentRecord
	if err := decodeAssignmentRecord(encodeAssignmentRecord(&assignmentRecord{}), &ar); err != nil || !reflect.DeepEqual(ar, assignmentRecord{}) {
		t.Fatalf("zero assignment record: %+v %v", ar, err)
	}
}

// TestRecordCodecReadsJSON: the JSON records written before decode as
// they did, and their binary form holds the same.
func TestRecordCodecReadsJSON(t *testing.T) {
	js := taskRecordFixture(t)
	var want taskRecord
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	var tr taskRecord
	if err := decodeTaskRecord(js, &tr); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tr, want) {
		t.Fatalf("JSON task record decoded as\n%+v\nwant\n%+v", tr, want)
	}
	s := tr.Settlement
	if tr.M == nil || len(tr.M.Runs) != 2 || tr.M.Runs[1].Receipt == nil || tr.M.Runs[1].State != market.ReplicaReported ||
		len(tr.Replicas) != 2 || len(tr.Replicas[0].Inline) != 23 || s == nil || s.Charged != 2000 || s.Refund != 398000 ||
		len(s.Payouts) != 2 || s.Payouts[1].Pay != 950 ||
		!tr.Posted || tr.Outcome != protocol.OutcomeVerified || tr.Finished != 1795487760481 {
		t.Fatalf("JSON task record decoded as %+v", tr)
	}
	bin := encodeTaskRecord(&tr)
	if bin[0] != recordV2 || len(bin) > len(js)/2 {
		t.Fatalf("binary task record: %d bytes (JSON %d), first byte %#x", len(bin), len(js), bin[0])
	}
	var back taskRecord
	if err := decodeTaskRecord(bin, &back); err != nil || !reflect.DeepEqual(back, want) {
		t.Fatalf("binary form of the JSON record: %+v %v", back, err)
	}
	t.Logf("task record: JSON %d bytes, binary %d bytes", len(js), len(bin))

	a := assignmentRecordFixture()
	for _, stub := range []*assignmentRecord{a, {ID: a.ID, Worker: a.Worker, Group: a.Group, Bench: true, Issued: 1, Expires: 2, Acked: true, Done: true}} {
		var got assignmentRecord
		if err := decodeAssignmentRecord(mustJSON(stub), &got); err != nil || !reflect.DeepEqual(&got, stub) {
			t.Fatalf("JSON assignment record decoded as %+v %v", got, err)
		}
	}
}

// TestRecordCodecErrors: malformed binary records are refused with an
// error saying what is wrong, never a panic.
func TestRecordCodecErrors(t *testing.T) {
	var tr taskRecord
	if err := json.Unmarshal(taskRecordFixture(t), &tr); err != nil {
		t.Fatal(err)
	}
	good := encodeTaskRecord(&tr)
	goodA := encodeAssignmentRecord(assignmentRecordFixture())
	for n := range len(good) {
		if err := decodeTaskRecord(good[:n], new(taskRecord)); err == nil {
			t.Fatalf("task record truncated to %d bytes decoded", n)
		}
	}
	for n := range len(goodA) {
		if err := decodeAssignmentRecord(goodA[:n], new(assignmentRecord)); err == nil {
			t.Fatalf("assignment record truncated to %d bytes decoded", n)
		}
	}
	// A task record up to its market task: 6 empty or zero fields.
	head := []byte{recordV1, 0, 0, 0, 0, 0, 0}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty record"},
		{"unknown version", []byte{0x03, 0}, "unknown record format (first byte 0x03)"},
		{"JSON array", []byte("[]"), "unknown record format"},
		{"trailing byte", append(bytes.Clone(good), 0), "1 trailing bytes"},
		{"truncated", good[:len(good)/2], "byte "},
		{"huge string", []byte{recordV1, 0xff, 0xff, 0xff, 0xff, 0x0f}, "length 4294967295 exceeds the 0 bytes left"},
		{"varint over 64 bits", cat([]byte{recordV1}, bytes.Repeat([]byte{0xff}, 11)), "over 64 bits"},
		{"index over uint32", cat([]byte{recordV1, 0}, []byte{0x80, 0x80, 0x80, 0x80, 0x10}), "4294967296 overflows uint32"},
		{"bad bool", cat(head, []byte{2}), "byte 7: bool byte 0x02 is neither 0 nor 1"},
		{"huge count", cat(head, []byte{0, 0xff, 0xff, 0x03, 1, 2, 3}), "count 65535 exceeds what the 3 bytes left can hold"},
		{"exit code over int32", cat(head, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x10}), "2147483648 overflows int32"},
	} {
		err := decodeTaskRecord(c.b, new(taskRecord))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "task record: ") {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	// Replica entries not aligned with the market task's runs.
	mis := tr
	mis.Replicas = append([]replicaInfo(nil), tr.Replicas...)
	mis.Replicas = append(mis.Replicas, replicaInfo{Assignment: "extra"})
	if err := decodeTaskRecord(encodeTaskRecord(&mis), new(taskRecord)); err == nil || !strings.Contains(err.Error(), "replica entries for") {
		t.Errorf("misaligned replicas: %v", err)
	}
	// The same in a record of the older JSON form.
	js, err := json.Marshal(&mis)
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeTaskRecord(js, new(taskRecord)); err == nil || !strings.Contains(err.Error(), "replica entries for") {
		t.Errorf("misaligned replicas in a JSON record: %v", err)
	}
	if js, err = json.Marshal(&tr); err != nil {
		t.Fatal(err)
	}
	if err := decodeTaskRecord(js, new(taskRecord)); err != nil {
		t.Errorf("aligned JSON record: %v", err)
	}
	// An assignment whose replica number overflows uint16.
	bad := []byte{recordV1, 0, 0, 0, 0, 1, 0, 0x80, 0x80, 0x04, 0, 0, 0, 0, 0}
	if err := decodeAssignmentRecord(bad, new(assignmentRecord)); err == nil || !strings.Contains(err.Error(), "65536 overflows uint16") {
		t.Errorf("replica over uint16: %v", err)
	}
}

// checkDecoded: a record the decoder accepted encodes and decodes to
// itself.
func checkDecoded[R any](t *testing.T, r *R, enc func(*R) []byte, dec func([]byte, *R) error) {
	var again R
	if err := dec(enc(r), &again); err != nil {
		t.Fatalf("re-encoded record does not decode: %v", err)
	}
	if !reflect.DeepEqual(&again, r) {
		t.Fatalf("re-encoded record decodes as\n%+v\nnot\n%+v", again, *r)
	}
}

func FuzzDecodeTaskRecord(f *testing.F) {
	js := taskRecordFixture(f)
	f.Add(js)
	var tr taskRecord
	if err := json.Unmarshal(js, &tr); err != nil {
		f.Fatal(err)
	}
	f.Add(encodeTaskRecord(&tr))
	f.Add(encodeTaskRecord(&taskRecord{}))
	rng := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		var r taskRecord
		fill(f, reflect.ValueOf(&r).Elem(), rng, false)
		f.Add(encodeTaskRecord(&r))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r taskRecord
		if err := decodeTaskRecord(b, &r); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if b[0] == recordV2 { // a V1 record is read, then written as V2
			checkDecoded(t, &r, encodeTaskRecord, decodeTaskRecord)
		}
	})
}

func FuzzDecodeAssignmentRecord(f *testing.F) {
	a := assignmentRecordFixture()
	a.Tasks, a.Sealed = a.Tasks[:3], a.Sealed[:40] // small seeds fuzz faster
	f.Add(mustJSON(a))
	f.Add(encodeAssignmentRecord(a))
	f.Add(encodeAssignmentRecord(&assignmentRecord{Done: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r assignmentRecord
		if err := decodeAssignmentRecord(b, &r); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if b[0] == recordV1 {
			checkDecoded(t, &r, encodeAssignmentRecord, decodeAssignmentRecord)
		}
	})
}

// BenchmarkTaskRecordCodec compares encode+decode of a settled task
// record (2 replicas) in the old JSON form and in the binary form.
func BenchmarkTaskRecordCodec(b *testing.B) {
	var rec taskRecord
	if err := json.Unmarshal(taskRecordFixture(b), &rec); err != nil {
		b.Fatal(err)
	}
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			enc := mustJSON(&rec)
			var r taskRecord
			if err := json.Unmarshal(enc, &r); err != nil {
				b.Fatal(err)
			}
			n = len(enc)
		}
		b.ReportMetric(float64(n), "record-bytes")
	})
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			enc := encodeTaskRecord(&rec)
			var r taskRecord
			if err := decodeTaskRecord(enc, &r); err != nil {
				b.Fatal(err)
			}
			n = len(enc)
		}
		b.ReportMetric(float64(n), "record-bytes")
	})
}

// BenchmarkAssignmentRecordCodec is the same for an open assignment of 64
// tasks.
func BenchmarkAssignmentRecordCodec(b *testing.B) {
	rec := assignmentRecordFixture()
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r assignmentRecord
			if err := json.Unmarshal(mustJSON(rec), &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r assignmentRecord
			if err := decodeAssignmentRecord(encodeAssignmentRecord(rec), &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
