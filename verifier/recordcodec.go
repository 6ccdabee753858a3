package verifier

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
)

// Binary encoding of the hot records: the task record (written several
// times per task) and the assignment record. The other records are JSON.
//
// A record is one version byte (recordV1) and then its fields in the
// order of the struct declarations, every field always present:
//
//	uint16, uint32, uint64   uvarint (Speed is a uint32)
//	int, int32, int64        zigzag varint (Micros: int64 micro-units)
//	ResultStatus, Outcome    one byte (the protocol's uint8s)
//	bool                     one byte, 0 or 1
//	string, []byte           uvarint length, then the bytes; the market's
//	                         string kinds (ReplicaState...) are strings
//	pointer                  bool present, then the value if present
//	slice                    uvarint count, then the elements
//	map[string]uint64        count, then key and value, keys sorted
//
// A V1 record (written before metered work) lacks the fields marked
// "V2" below and carries each untrusted reference and L = t × s (a
// 128-bit work as two uvarints), which are read and dropped.
//
// An empty []byte or slice reads back as nil (as from the JSON form).
//
// The decoder accepts exactly this: a truncated or oversized value, a
// length or count larger than the bytes left could hold, a bool other
// than 0 or 1, an integer out of its field's range or trailing bytes are
// errors. A record starting with '{' is the JSON form written before
// (records.go) and is decoded as JSON; JSON never starts with recordV1.
//
// The field lists below must follow the structs: TestRecordCodecRoundTrip
// fills every field of every nested struct (by reflection) and fails if
// one is lost.

// recordV1 is the first byte of a binary record written before metered
// work; recordV2 of one written since (task records gained the work,
// window, refused state, carries and the new terms; decisions lost the
// untrusted reference). Both are read; V2 is written.
const (
	recordV1 = 0x01
	recordV2 = 0x02
)

// recordFormat tells a binary record (true) from the old JSON form.
func recordFormat(b []byte) (binary bool, err error) {
	switch {
	case len(b) == 0:
		return false, fmt.Errorf("empty record")
	case b[0] == '{':
		return false, nil
	case b[0] == recordV1 || b[0] == recordV2:
		return true, nil
	}
	return false, fmt.Errorf("unknown record format (first byte %#02x)", b[0])
}

// ---- task record ----

// encodeTaskRecord returns the binary form of r.
func encodeTaskRecord(r *taskRecord) []byte {
	n := 512 + len(r.Inline) // a settled task of 2 replicas takes ~1300 bytes
	if r.M != nil {
		n += 400 * len(r.M.Runs)
	}
	for _, ri := range r.Replicas {
		n += len(ri.Inline)
	}
	if r.Own != nil {
		n += len(r.Own.Inline)
	}
	e := recWriter{b: make([]byte, 0, n)}
	e.byte(recordV2)
	e.str(r.Group)
	e.u64(uint64(r.Index))
	e.str(r.Input)
	e.u64(r.Size)
	e.bytes(r.Inline)
	e.i64(r.Created)
	if e.bool(r.M != nil) {
		e.marketTask(r.M)
	}
	e.u64(uint64(len(r.Replicas)))
	for i := range r.Replicas {
		e.replicaInfo(&r.Replicas[i])
	}
	if e.bool(r.Own != nil) {
		e.ownRun(r.Own)
	}
	e.bool(r.SpotCheck)
	e.i64(int64(r.EscrowQueued))
	e.i64(int64(r.EscrowPosted))
	e.i64(r.WaitingSince)
	e.str(r.WaitReason)
	if e.bool(r.Settlement != nil) {
		e.settlement(r.Settlement)
	}
	e.bool(r.Posted)
	e.byte(byte(r.Outcome))
	e.str(r.Reason)
	e.bool(r.Released)
	e.i64(r.Finished)
	return e.b
}

// decodeTaskRecord decodes a task record in either form into r.
func decodeTaskRecord(b []byte, r *taskRecord) error {
	bin, err := recordFormat(b)
	if err != nil {
		return fmt.Errorf("task record: %w", err)
	}
	if !bin {
		*r = taskRecord{}
		if err := json.Unmarshal(b, r); err != nil {
			return err
		}
		return checkReplicasAligned(r)
	}
	d := recReader{b: b, off: 1, v: b[0]}
	*r = taskRecord{
		Group:   d.str(),
		Index:   d.u32(),
		Input:   d.str(),
		Size:    d.u64(),
		Inline:  d.bytes(),
		Created: d.i64(),
	}
	if d.bool() {
		r.M = d.marketTask()
	}
	if n := d.count(minReplicaInfo); n > 0 {
		r.Replicas = make([]replicaInfo, n)
		for i := range r.Replicas {
			r.Replicas[i] = d.replicaInfo()
		}
	}
	if d.bool() {
		r.Own = d.ownRun()
	}
	r.SpotCheck = d.bool()
	r.EscrowQueued = d.int()
	r.EscrowPosted = d.int()
	r.WaitingSince = d.i64()
	r.WaitReason = d.str()
	if d.bool() {
		r.Settlement = d.settlement()
	}
	r.Posted = d.bool()
	r.Outcome = protocol.Outcome(d.byte())
	r.Reason = d.str()
	r.Released = d.bool()
	r.Finished = d.i64()
	if err := d.end(); err != nil {
		return fmt.Errorf("task record: %w", err)
	}
	return checkReplicasAligned(r)
}

// checkReplicasAligned refuses a task record, in either form, whose
// replica entries and market runs differ in number: Replicas is indexed by
// the position of the run in M.Runs.
func checkReplicasAligned(r *taskRecord) error {
	if r.M != nil && len(r.Replicas) != len(r.M.Runs) {
		return fmt.Errorf("task record: %d replica entries for %d runs", len(r.Replicas), len(r.M.Runs))
	}
	return nil
}

// Smallest encoded size of a slice element, to bound counts before
// allocating.
const (
	minReplicaInfo = 8 // 8 fields of at least one byte
	minReplica     = 9
	minVerdict     = 7
	minPayout      = 6
	minTaskRef     = 2
)

func (e *recWriter) replicaInfo(r *replicaInfo) {
	e.str(r.Assignment)
	e.bool(r.Acked)
	e.byte(byte(r.Status))
	e.u64(uint64(r.ExitCode))
	e.str(r.Result)
	e.u64(r.Size)
	e.bytes(r.Inline)
	e.u64(r.ExecMicros)
	e.u64(r.Work)
}

func (d *recReader) replicaInfo() replicaInfo {
	ri := replicaInfo{
		Assignment: d.str(),
		Acked:      d.bool(),
		Status:     protocol.ResultStatus(d.byte()),
		ExitCode:   d.u32(),
		Result:     d.str(),
		Size:       d.u64(),
		Inline:     d.bytes(),
		ExecMicros: d.u64(),
	}
	if d.v >= recordV2 {
		ri.Work = d.u64()
	}
	return ri
}

func (e *recWriter) ownRun(o *ownRun) {
	e.byte(byte(o.Status))
	e.u64(uint64(o.ExitCode))
	e.str(o.Result)
	e.u64(o.Size)
	e.bytes(o.Inline)
	e.i64(o.ExecMicros)
	e.str(o.Reason)
	e.u64(o.Work)
}

func (d *recReader) ownRun() *ownRun {
	o := &ownRun{
		Status:     protocol.ResultStatus(d.byte()),
		ExitCode:   d.u32(),
		Result:     d.str(),
		Size:       d.u64(),
		Inline:     d.bytes(),
		ExecMicros: d.i64(),
		Reason:     d.str(),
	}
	if d.v >= recordV2 {
		o.Work = d.u64()
	}
	return o
}

func (e *recWriter) marketTask(t *market.Task) {
	e.str(t.Consumer)
	e.str(t.Group)
	e.i64(int64(t.Index))
	e.i64(int64(t.MaxPrice))
	e.u64(uint64(t.MinSpeed))
	e.i64(int64(t.Replicas))
	e.i64(t.Terms.MaxRunMicros)
	e.i64(int64(t.Terms.MaxRuns))
	e.u64(uint64(t.Terms.TolerancePPM))
	e.i64(t.Terms.SlackMicros)
	e.u64(uint64(t.Terms.OperatorCutPPM))
	e.bool(t.Terms.VerifierTiebreak)
	e.u64(uint64(t.Terms.MaxSpeed))
	e.u64(uint64(t.Terms.EscrowSpeed))
	e.u64(uint64(len(t.Runs)))
	for i := range t.Runs {
		r := &t.Runs[i]
		e.str(r.Worker)
		e.str(r.Owner)
		e.i64(int64(r.Price))
		e.u64(uint64(r.Speed))
		e.str(string(r.State))
		e.i64(r.AssignedAt)
		e.i64(r.LastSeen)
		if e.bool(r.Receipt != nil) {
			e.str(r.Receipt.ResultCID)
			e.i64(int64(r.Receipt.ExitCode))
			e.u64(r.Receipt.Work)
			e.i64(r.Receipt.ExecMicros)
			e.i64(r.Receipt.WindowMicros)
			e.i64(r.Receipt.SlotMicros)
			e.bool(r.Receipt.Stopped)
		}
		e.str(r.Reason)
	}
	e.bool(t.VerifierPending)
	if e.bool(t.Verifier != nil) {
		e.str(t.Verifier.ResultCID)
		e.i64(int64(t.Verifier.ExitCode))
		e.u64(t.Verifier.Work)
		e.i64(t.Verifier.ExecMicros)
		e.u64(uint64(t.Verifier.Speed))
		e.bool(t.Verifier.Stopped)
	}
	e.i64(int64(t.Escrowed))
	e.i64(int64(t.EscrowSlots))
	e.str(t.Aborted)
	e.bool(t.Settled)
}

func (d *recReader) marketTask() *market.Task {
	t := &market.Task{
		Consumer: d.str(),
		Group:    d.str(),
		Index:    d.int(),
		MaxPrice: protocol.Micros(d.i64()),
		MinSpeed: protocol.Speed(d.u32()),
		Replicas: d.int(),
		Terms: market.Terms{
			MaxRunMicros:     d.i64(),
			MaxRuns:          d.int(),
			TolerancePPM:     d.u32(),
			SlackMicros:      d.i64(),
			OperatorCutPPM:   d.u32(),
			VerifierTiebreak: d.bool(),
		},
	}
	if d.v >= recordV2 {
		t.Terms.MaxSpeed = protocol.Speed(d.u32())
		t.Terms.EscrowSpeed = protocol.Speed(d.u32())
	}
	if n := d.count(minReplica); n > 0 {
		t.Runs = make([]market.Replica, n)
		for i := range t.Runs {
			r := &t.Runs[i]
			r.Worker = d.str()
			r.Owner = d.str()
			r.Price = protocol.Micros(d.i64())
			r.Speed = protocol.Speed(d.u32())
			r.State = market.ReplicaState(d.str())
			r.AssignedAt = d.i64()
			r.LastSeen = d.i64()
			if d.bool() {
				rc := &market.Receipt{ResultCID: d.str(), ExitCode: d.i32()}
				if d.v >= recordV2 {
					rc.Work = d.u64()
				}
				rc.ExecMicros = d.i64()
				if d.v >= recordV2 {
					rc.WindowMicros = d.i64()
					rc.SlotMicros = d.i64()
				}
				rc.Stopped = d.bool()
				r.Receipt = rc
			}
			r.Reason = d.str()
		}
	}
	t.VerifierPending = d.bool()
	if d.bool() {
		vr := &market.VerifierRun{ResultCID: d.str(), ExitCode: d.i32()}
		if d.v >= recordV2 {
			vr.Work = d.u64()
		}
		vr.ExecMicros = d.i64()
		vr.Speed = protocol.Speed(d.u32())
		vr.Stopped = d.bool()
		t.Verifier = vr
	}
	t.Escrowed = protocol.Micros(d.i64())
	t.EscrowSlots = d.int()
	t.Aborted = d.str()
	t.Settled = d.bool()
	return t
}

func (e *recWriter) settlement(s *market.Settlement) {
	e.str(s.Consumer)
	e.str(s.Group)
	e.i64(int64(s.Index))
	dc := &s.Decision
	e.str(string(dc.Kind))
	e.i64(int64(dc.Need))
	e.bool(dc.Verifier)
	e.str(dc.Result)
	e.i64(int64(dc.ExitCode))
	e.bool(dc.Trusted)
	e.u64(dc.Work)
	e.u64(uint64(len(dc.Verdicts)))
	for i := range dc.Verdicts {
		vd := &dc.Verdicts[i]
		e.str(vd.Worker)
		e.str(string(vd.Outcome))
		e.bool(vd.Strike)
		e.u64(vd.Work)
		e.u64(uint64(vd.EffectiveSpeed))
		e.i64(vd.BilledMicros)
		e.i64(vd.TimeMicros)
	}
	e.str(dc.Reason)
	e.i64(int64(s.Escrowed))
	e.i64(int64(s.Charged))
	e.i64(int64(s.OperatorCut))
	e.i64(int64(s.Refund))
	e.u64(uint64(len(s.Payouts)))
	for i := range s.Payouts {
		p := &s.Payouts[i]
		e.str(p.Worker)
		e.i64(int64(p.Price))
		e.u64(uint64(p.Speed))
		e.u64(p.Work)
		e.i64(p.BilledMicros)
		e.u64(uint64(p.Exact))
		e.i64(int64(p.Charge))
		e.i64(int64(p.Cut))
		e.i64(int64(p.Pay))
	}
	keys := slices.Sorted(maps.Keys(s.Carries))
	e.u64(uint64(len(keys)))
	for _, k := range keys {
		e.str(k)
		e.u64(s.Carries[k])
	}
}

func (d *recReader) settlement() *market.Settlement {
	s := &market.Settlement{
		Consumer: d.str(),
		Group:    d.str(),
		Index:    d.int(),
	}
	dc := &s.Decision
	dc.Kind = market.DecisionKind(d.str())
	dc.Need = d.int()
	dc.Verifier = d.bool()
	dc.Result = d.str()
	dc.ExitCode = d.i32()
	dc.Trusted = d.bool()
	if d.v >= recordV2 {
		dc.Work = d.u64()
	} else {
		d.str()  // the untrusted reference's worker
		d.work() // its L = t × s, which no rule uses since metering
	}
	if n := d.count(minVerdict); n > 0 {
		dc.Verdicts = make([]market.Verdict, n)
		for i := range dc.Verdicts {
			vd := market.Verdict{Worker: d.str(), Outcome: market.Outcome(d.str()), Strike: d.bool()}
			if d.v >= recordV2 {
				vd.Work = d.u64()
			} else {
				d.work()
			}
			vd.EffectiveSpeed = protocol.Speed(d.u32())
			vd.BilledMicros = d.i64()
			if d.v >= recordV2 {
				vd.TimeMicros = d.i64()
			}
			dc.Verdicts[i] = vd
		}
	}
	dc.Reason = d.str()
	s.Escrowed = protocol.Micros(d.i64())
	s.Charged = protocol.Micros(d.i64())
	s.OperatorCut = protocol.Micros(d.i64())
	s.Refund = protocol.Micros(d.i64())
	if n := d.count(minPayout); n > 0 {
		s.Payouts = make([]market.Payout, n)
		for i := range s.Payouts {
			p := market.Payout{Worker: d.str(), Price: protocol.Micros(d.i64())}
			if d.v >= recordV2 {
				p.Speed = protocol.Speed(d.u32())
				p.Work = d.u64()
			}
			p.BilledMicros = d.i64()
			if d.v >= recordV2 {
				p.Exact = market.Picos(d.u64())
			}
			p.Charge = protocol.Micros(d.i64())
			p.Cut = protocol.Micros(d.i64())
			p.Pay = protocol.Micros(d.i64())
			s.Payouts[i] = p
		}
	}
	if d.v >= recordV2 {
		if n := d.count(2); n > 0 {
			s.Carries = make(map[string]uint64, n)
			for range n {
				k := d.str()
				s.Carries[k] = d.u64()
			}
		}
	}
	return s
}

// work skips a V1 record's 128-bit L = t × s (Hi, Lo uvarints).
func (d *recReader) work() {
	d.u64()
	d.u64()
}

// ---- assignment record ----

// encodeAssignmentRecord returns the binary form of a.
func encodeAssignmentRecord(a *assignmentRecord) []byte {
	e := recWriter{b: make([]byte, 0, 128+len(a.Sealed)+4*len(a.Tasks))}
	e.byte(recordV1)
	e.str(a.ID)
	e.str(a.Worker)
	e.str(a.Group)
	e.bool(a.Bench)
	e.u64(uint64(len(a.Tasks)))
	for _, t := range a.Tasks {
		e.u64(uint64(t.Index))
		e.u64(uint64(t.Replica))
	}
	e.i64(a.Issued)
	e.i64(a.Expires)
	e.bytes(a.Sealed)
	e.bool(a.Acked)
	e.bool(a.Done)
	return e.b
}

// decodeAssignmentRecord decodes an assignment record in either form into
// a.
func decodeAssignmentRecord(b []byte, a *assignmentRecord) error {
	bin, err := recordFormat(b)
	if err != nil {
		return fmt.Errorf("assignment record: %w", err)
	}
	if !bin {
		*a = assignmentRecord{}
		return json.Unmarshal(b, a)
	}
	d := recReader{b: b, off: 1}
	*a = assignmentRecord{
		ID:     d.str(),
		Worker: d.str(),
		Group:  d.str(),
		Bench:  d.bool(),
	}
	if n := d.count(minTaskRef); n > 0 {
		a.Tasks = make([]taskRef, n)
		for i := range a.Tasks {
			a.Tasks[i] = taskRef{Index: d.u32(), Replica: d.u16()}
		}
	}
	a.Issued = d.i64()
	a.Expires = d.i64()
	a.Sealed = d.bytes()
	a.Acked = d.bool()
	a.Done = d.bool()
	if err := d.end(); err != nil {
		return fmt.Errorf("assignment record: %w", err)
	}
	return nil
}

// ---- primitives ----

// recWriter appends a binary record.
type recWriter struct{ b []byte }

func (e *recWriter) byte(v byte)    { e.b = append(e.b, v) }
func (e *recWriter) u64(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *recWriter) i64(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *recWriter) str(s string)   { e.u64(uint64(len(s))); e.b = append(e.b, s...) }
func (e *recWriter) bytes(p []byte) { e.u64(uint64(len(p))); e.b = append(e.b, p...) }

// bool writes v and returns it (for optional values).
func (e *recWriter) bool(v bool) bool {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
	return v
}

// recReader reads a binary record. The first error sticks: every later
// read returns a zero value, and end reports it.
type recReader struct {
	b   []byte
	off int
	err error
	v   byte // the record's version byte
}

func (d *recReader) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("byte %d: %s", d.off, fmt.Sprintf(format, args...))
	}
}

// left is the number of unread bytes.
func (d *recReader) left() int { return len(d.b) - d.off }

func (d *recReader) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.left() < 1 {
		d.fail("truncated")
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

func (d *recReader) bool() bool {
	switch v := d.byte(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.off--
		d.fail("bool byte %#02x is neither 0 nor 1", v)
		return false
	}
}

func (d *recReader) u64() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("truncated or over 64 bits uvarint")
		return 0
	}
	d.off += n
	return v
}

func (d *recReader) i64() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("truncated or over 64 bits varint")
		return 0
	}
	d.off += n
	return v
}

func (d *recReader) u32() uint32 {
	v := d.u64()
	if v > math.MaxUint32 {
		d.fail("%d overflows uint32", v)
		return 0
	}
	return uint32(v)
}

func (d *recReader) u16() uint16 {
	v := d.u64()
	if v > math.MaxUint16 {
		d.fail("%d overflows uint16", v)
		return 0
	}
	return uint16(v)
}

func (d *recReader) i32() int32 {
	v := d.i64()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("%d overflows int32", v)
		return 0
	}
	return int32(v)
}

func (d *recReader) int() int {
	v := d.i64()
	if int64(int(v)) != v {
		d.fail("%d overflows int", v)
		return 0
	}
	return int(v)
}

// raw reads a length and that many bytes (aliasing the record).
func (d *recReader) raw() []byte {
	n := d.u64()
	if d.err != nil {
		return nil
	}
	if n > uint64(d.left()) {
		d.fail("length %d exceeds the %d bytes left", n, d.left())
		return nil
	}
	p := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return p
}

func (d *recReader) str() string { return string(d.raw()) }

// bytes reads a byte string into a copy; empty reads as nil.
func (d *recReader) bytes() []byte {
	p := d.raw()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// count reads a slice length, refusing one that the bytes left cannot
// hold at minSize bytes per element (so a hostile count cannot allocate).
func (d *recReader) count(minSize int) int {
	n := d.u64()
	if d.err != nil {
		return 0
	}
	if n > uint64(d.left()/minSize) {
		d.fail("count %d exceeds what the %d bytes left can hold", n, d.left())
		return 0
	}
	return int(n)
}

// end reports the first error, or trailing bytes.
func (d *recReader) end() error {
	if d.err == nil && d.left() != 0 {
		d.fail("%d trailing bytes", d.left())
	}
	return d.err
}
