package protocol

import (
	"encoding/hex"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// MsgType identifies a message body inside an envelope.
type MsgType uint8

// Message types. Values are fixed forever; new messages get new values.
const (
	TypeRating           MsgType = 1
	TypeOffer            MsgType = 2
	TypeBid              MsgType = 3
	TypeRegister         MsgType = 4
	TypeSubmit           MsgType = 5
	TypeAssignment       MsgType = 6
	TypeReceipt          MsgType = 7
	TypeHeartbeat        MsgType = 8
	TypeRelease          MsgType = 9
	TypeCancel           MsgType = 10
	TypeStatement        MsgType = 11
	TypeStatementRequest MsgType = 12
	TypeAck              MsgType = 13
)

var typeNames = map[MsgType]string{
	TypeRating: "rating", TypeOffer: "offer", TypeBid: "bid", TypeRegister: "register",
	TypeSubmit: "submit", TypeAssignment: "assignment", TypeReceipt: "receipt",
	TypeHeartbeat: "heartbeat", TypeRelease: "release", TypeCancel: "cancel",
	TypeStatement: "statement", TypeStatementRequest: "statement-request", TypeAck: "ack",
}

func (t MsgType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Message is implemented by every message body.
type Message interface {
	Type() MsgType
	encode(w *writer)
	decode(r *reader)
}

// ID is a 16-byte identifier chosen at random by its creator (job groups,
// assignments, nonces).
type ID [16]byte

func (id ID) String() string { return fmt.Sprintf("%x", id[:]) }

// ParseID parses the hex form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 32 {
		return id, fmt.Errorf("%w: id %q is not 32 hex digits", ErrMalformed, s)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return id, fmt.Errorf("%w: id %q: %v", ErrMalformed, s, err)
	}
	copy(id[:], b)
	return id, nil
}

// ResultStatus is how a job run ended. It is part of the job's output and so
// of the result CID replicas are compared on.
type ResultStatus uint8

const (
	StatusOK            ResultStatus = 0 // exited 0
	StatusExit          ResultStatus = 1 // exited non-zero
	StatusTrap          ResultStatus = 2 // wasm trap
	StatusTimeout       ResultStatus = 3 // running time limit reached
	StatusMemoryLimit   ResultStatus = 4 // memory cap reached
	StatusOutputLimit   ResultStatus = 5 // stdout cap reached
	StatusInvalidModule ResultStatus = 6 // module does not compile
	StatusMissingImport ResultStatus = 7 // module imports what the sandbox does not give
	StatusFetchFailed   ResultStatus = 8 // worker could not fetch the module or input
	StatusWorkLimit     ResultStatus = 9 // metered work reached the job's work budget
	statusMax           ResultStatus = 9
)

var statusNames = [...]string{"ok", "exit", "trap", "timeout", "memory-limit", "output-limit", "invalid-module", "missing-import", "fetch-failed", "work-limit"}

func (s ResultStatus) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Deterministic reports whether two honest runs of the same job always end
// with this status (so replicas can be compared on it).
func (s ResultStatus) Deterministic() bool {
	switch s {
	case StatusOK, StatusExit, StatusTrap, StatusMemoryLimit, StatusOutputLimit, StatusInvalidModule, StatusMissingImport,
		StatusWorkLimit:
		return true
	}
	return false
}

// Rating is the verifier's signed statement of a worker's speed and
// trustworthiness. Workers quote it (as sealed envelope bytes) in offers.
type Rating struct {
	Worker         peer.ID
	Speed          Speed  // milli standard units
	ReliabilityPPM uint32 // trust rating, 0..1_000_000
	Strikes        uint32
	Issued         int64 // unix ms
	Expires        int64 // unix ms
}

func (*Rating) Type() MsgType { return TypeRating }
func (m *Rating) encode(w *writer) {
	w.peer(m.Worker)
	w.u32(uint32(m.Speed))
	w.u32(m.ReliabilityPPM)
	w.u32(m.Strikes)
	w.i64(m.Issued)
	w.i64(m.Expires)
}
func (m *Rating) decode(r *reader) {
	m.Worker = r.peer()
	m.Speed = Speed(r.u32())
	m.ReliabilityPPM = r.u32()
	m.Strikes = r.u32()
	m.Issued = r.i64()
	m.Expires = r.i64()
	if m.ReliabilityPPM > 1_000_000 {
		r.fail("reliability %d ppm out of range", m.ReliabilityPPM)
	}
}

// Offer is a worker's standing offer, published on TopicOffers and
// re-announced periodically with a growing Seq.
type Offer struct {
	Worker   peer.ID
	Seq      uint64
	MinPrice Micros // per hour
	Capacity uint32 // free slots now
	Slots    uint32 // total concurrent slots
	Rating   []byte // sealed Rating envelope from the verifier; empty before the first rating
	Addrs    []string
	Expires  int64 // unix ms
}

func (*Offer) Type() MsgType { return TypeOffer }
func (m *Offer) encode(w *writer) {
	w.peer(m.Worker)
	w.u64(m.Seq)
	w.i64(int64(m.MinPrice))
	w.u32(m.Capacity)
	w.u32(m.Slots)
	w.bytes(m.Rating)
	encodeStrings(w, m.Addrs)
	w.i64(m.Expires)
}
func (m *Offer) decode(r *reader) {
	m.Worker = r.peer()
	m.Seq = r.u64()
	m.MinPrice = Micros(r.i64())
	m.Capacity = r.u32()
	m.Slots = r.u32()
	m.Rating = r.bytes(1024)
	m.Addrs = decodeStrings(r, MaxAddrs, MaxAddrLen)
	m.Expires = r.i64()
	if m.MinPrice < 0 {
		r.fail("negative price")
	}
	if m.Capacity > m.Slots {
		r.fail("capacity %d above slots %d", m.Capacity, m.Slots)
	}
}

// Bid is a consumer's job group as announced on TopicBids.
type Bid struct {
	Consumer peer.ID
	Group    ID
	Seq      uint64
	Module   cid.Cid
	Tasks    uint32
	MaxPrice Micros // per hour
	MinSpeed Speed
	Replicas uint8
	Expires  int64 // unix ms
}

func (*Bid) Type() MsgType { return TypeBid }
func (m *Bid) encode(w *writer) {
	w.peer(m.Consumer)
	w.id16(m.Group)
	w.u64(m.Seq)
	w.cid(m.Module)
	w.u32(m.Tasks)
	w.i64(int64(m.MaxPrice))
	w.u32(uint32(m.MinSpeed))
	w.u8(m.Replicas)
	w.i64(m.Expires)
}
func (m *Bid) decode(r *reader) {
	m.Consumer = r.peer()
	m.Group = r.id16()
	m.Seq = r.u64()
	m.Module = r.cid()
	m.Tasks = r.u32()
	m.MaxPrice = Micros(r.i64())
	m.MinSpeed = Speed(r.u32())
	m.Replicas = r.u8()
	m.Expires = r.i64()
	if m.MaxPrice < 0 {
		r.fail("negative price")
	}
	checkReplicas(r, m.Replicas)
}

// Register is a worker's request to the verifier to be benchmarked and
// rated. The verifier answers with an Ack and later a Rating.
type Register struct {
	Worker   peer.ID
	Owner    string // payout owner label; replicas prefer distinct owners
	MinPrice Micros // per hour
	Slots    uint32
	Addrs    []string
	Nonce    ID
	Time     int64 // unix ms
}

func (*Register) Type() MsgType { return TypeRegister }
func (m *Register) encode(w *writer) {
	w.peer(m.Worker)
	w.str(m.Owner)
	w.i64(int64(m.MinPrice))
	w.u32(m.Slots)
	encodeStrings(w, m.Addrs)
	w.id16(m.Nonce)
	w.i64(m.Time)
}
func (m *Register) decode(r *reader) {
	m.Worker = r.peer()
	m.Owner = r.str(MaxTextLen)
	m.MinPrice = Micros(r.i64())
	m.Slots = r.u32()
	m.Addrs = decodeStrings(r, MaxAddrs, MaxAddrLen)
	m.Nonce = r.id16()
	m.Time = r.i64()
	if m.MinPrice < 0 {
		r.fail("negative price")
	}
}

// TaskInput is one task of a submitted job group.
type TaskInput struct {
	Index  uint32
	Input  cid.Cid
	Size   uint64
	Inline []byte // the input bytes when Size <= MaxInline, else empty
}

func (t *TaskInput) encode(w *writer) {
	w.u32(t.Index)
	w.cid(t.Input)
	w.u64(t.Size)
	w.bytes(t.Inline)
}
func (t *TaskInput) decode(r *reader) {
	t.Index = r.u32()
	t.Input = r.cid()
	t.Size = r.u64()
	t.Inline = r.bytes(MaxInline)
	checkInline(r, t.Input, t.Size, t.Inline)
}

// Submit asks the verifier to run tasks of a job group. A group may be
// submitted in several Submit messages with identical parameters; tasks are
// idempotent on their index.
type Submit struct {
	Consumer      peer.ID
	Group         ID
	Module        cid.Cid
	ModuleSize    uint64
	MaxPrice      Micros // per hour
	MinSpeed      Speed
	Replicas      uint8
	TimeoutMillis uint64
	MaxMemory     uint64   // bytes
	Addrs         []string // where workers fetch blobs from the consumer
	Time          int64    // unix ms
	Tasks         []TaskInput
}

func (*Submit) Type() MsgType { return TypeSubmit }
func (m *Submit) encode(w *writer) {
	w.peer(m.Consumer)
	w.id16(m.Group)
	w.cid(m.Module)
	w.u64(m.ModuleSize)
	w.i64(int64(m.MaxPrice))
	w.u32(uint32(m.MinSpeed))
	w.u8(m.Replicas)
	w.u64(m.TimeoutMillis)
	w.u64(m.MaxMemory)
	encodeStrings(w, m.Addrs)
	w.i64(m.Time)
	w.u32(uint32(len(m.Tasks)))
	for i := range m.Tasks {
		m.Tasks[i].encode(w)
	}
}
func (m *Submit) decode(r *reader) {
	m.Consumer = r.peer()
	m.Group = r.id16()
	m.Module = r.cid()
	m.ModuleSize = r.u64()
	m.MaxPrice = Micros(r.i64())
	m.MinSpeed = Speed(r.u32())
	m.Replicas = r.u8()
	m.TimeoutMillis = r.u64()
	m.MaxMemory = r.u64()
	m.Addrs = decodeStrings(r, MaxAddrs, MaxAddrLen)
	m.Time = r.i64()
	n := r.count(MaxTasksPerMessage)
	if n > 0 {
		m.Tasks = make([]TaskInput, n)
		for i := range m.Tasks {
			m.Tasks[i].decode(r)
		}
	}
	if m.MaxPrice < 0 {
		r.fail("negative price")
	}
	if m.ModuleSize > MaxBlobSize {
		r.fail("module of %d bytes exceeds limit", m.ModuleSize)
	}
	if m.TimeoutMillis == 0 || m.TimeoutMillis > uint64(MaxJobTimeout.Milliseconds()) {
		r.fail("timeout %d ms out of range", m.TimeoutMillis)
	}
	checkReplicas(r, m.Replicas)
}

// AssignedTask is one replica of one task in an assignment.
type AssignedTask struct {
	Index   uint32
	Replica uint16
	Input   cid.Cid
	Size    uint64
	Inline  []byte
}

func (t *AssignedTask) encode(w *writer) {
	w.u32(t.Index)
	w.u16(t.Replica)
	w.cid(t.Input)
	w.u64(t.Size)
	w.bytes(t.Inline)
}
func (t *AssignedTask) decode(r *reader) {
	t.Index = r.u32()
	t.Replica = r.u16()
	t.Input = r.cid()
	t.Size = r.u64()
	t.Inline = r.bytes(MaxInline)
	checkInline(r, t.Input, t.Size, t.Inline)
}

// Assignment is the verifier's signed order to a worker to run tasks of a
// group at an agreed hourly price. Workers execute nothing else.
type Assignment struct {
	ID            ID
	Worker        peer.ID
	Consumer      peer.ID
	ConsumerAddrs []string
	Group         ID
	Module        cid.Cid
	ModuleSize    uint64
	Price         Micros // per hour, agreed
	TimeoutMillis uint64
	MaxMemory     uint64
	Issued        int64 // unix ms
	Expires       int64 // unix ms: the worker refuses it after this
	Tasks         []AssignedTask
}

func (*Assignment) Type() MsgType { return TypeAssignment }
func (m *Assignment) encode(w *writer) {
	w.id16(m.ID)
	w.peer(m.Worker)
	w.peer(m.Consumer)
	encodeStrings(w, m.ConsumerAddrs)
	w.id16(m.Group)
	w.cid(m.Module)
	w.u64(m.ModuleSize)
	w.i64(int64(m.Price))
	w.u64(m.TimeoutMillis)
	w.u64(m.MaxMemory)
	w.i64(m.Issued)
	w.i64(m.Expires)
	w.u32(uint32(len(m.Tasks)))
	for i := range m.Tasks {
		m.Tasks[i].encode(w)
	}
}
func (m *Assignment) decode(r *reader) {
	m.ID = r.id16()
	m.Worker = r.peer()
	m.Consumer = r.peer()
	m.ConsumerAddrs = decodeStrings(r, MaxAddrs, MaxAddrLen)
	m.Group = r.id16()
	m.Module = r.cid()
	m.ModuleSize = r.u64()
	m.Price = Micros(r.i64())
	m.TimeoutMillis = r.u64()
	m.MaxMemory = r.u64()
	m.Issued = r.i64()
	m.Expires = r.i64()
	n := r.count(MaxTasksPerMessage)
	if n > 0 {
		m.Tasks = make([]AssignedTask, n)
		for i := range m.Tasks {
			m.Tasks[i].decode(r)
		}
	}
	if m.Price < 0 {
		r.fail("negative price")
	}
	if m.ModuleSize > MaxBlobSize {
		r.fail("module of %d bytes exceeds limit", m.ModuleSize)
	}
	if m.TimeoutMillis == 0 || m.TimeoutMillis > uint64(MaxJobTimeout.Milliseconds()) {
		r.fail("timeout %d ms out of range", m.TimeoutMillis)
	}
}

// TaskResult is a worker's report of one replica it ran.
type TaskResult struct {
	Index      uint32
	Replica    uint16
	Status     ResultStatus
	ExitCode   uint32
	Result     cid.Cid // CID of the encoded Output
	ResultSize uint64
	ExecMicros uint64 // measured execution time, as the worker reports it
	// Work is the run's metered work in standard work units (WorkPerSecond
	// per second at speed 1.0): exact and the same on every honest replica.
	Work   uint64
	Inline []byte // the encoded Output when ResultSize <= MaxInline
}

func (t *TaskResult) encode(w *writer) {
	w.u32(t.Index)
	w.u16(t.Replica)
	w.u8(uint8(t.Status))
	w.u32(t.ExitCode)
	w.cid(t.Result)
	w.u64(t.ResultSize)
	w.u64(t.ExecMicros)
	w.u64(t.Work)
	w.bytes(t.Inline)
}
func (t *TaskResult) decode(r *reader) {
	t.Index = r.u32()
	t.Replica = r.u16()
	t.Status = ResultStatus(r.u8())
	t.ExitCode = r.u32()
	t.Result = r.cid()
	t.ResultSize = r.u64()
	t.ExecMicros = r.u64()
	t.Work = r.u64()
	t.Inline = r.bytes(MaxInline)
	if t.Status > statusMax {
		r.fail("unknown status %d", t.Status)
	}
	checkInline(r, t.Result, t.ResultSize, t.Inline)
}

// Receipt is a worker's signed report of replicas it ran for one
// assignment.
type Receipt struct {
	Worker     peer.ID
	Assignment ID
	Group      ID
	Results    []TaskResult
}

func (*Receipt) Type() MsgType { return TypeReceipt }
func (m *Receipt) encode(w *writer) {
	w.peer(m.Worker)
	w.id16(m.Assignment)
	w.id16(m.Group)
	w.u32(uint32(len(m.Results)))
	for i := range m.Results {
		m.Results[i].encode(w)
	}
}
func (m *Receipt) decode(r *reader) {
	m.Worker = r.peer()
	m.Assignment = r.id16()
	m.Group = r.id16()
	n := r.count(MaxTasksPerMessage)
	if n > 0 {
		m.Results = make([]TaskResult, n)
		for i := range m.Results {
			m.Results[i].decode(r)
		}
	}
}

// Heartbeat tells the verifier a worker is alive and which assignments it
// still holds.
type Heartbeat struct {
	Worker   peer.ID
	Seq      uint64
	Time     int64 // unix ms
	Capacity uint32
	Holding  []ID
}

func (*Heartbeat) Type() MsgType { return TypeHeartbeat }
func (m *Heartbeat) encode(w *writer) {
	w.peer(m.Worker)
	w.u64(m.Seq)
	w.i64(m.Time)
	w.u32(m.Capacity)
	w.u32(uint32(len(m.Holding)))
	for _, id := range m.Holding {
		w.id16(id)
	}
}
func (m *Heartbeat) decode(r *reader) {
	m.Worker = r.peer()
	m.Seq = r.u64()
	m.Time = r.i64()
	m.Capacity = r.u32()
	n := r.count(MaxHolding)
	if n > 0 {
		m.Holding = make([]ID, n)
		for i := range m.Holding {
			m.Holding[i] = r.id16()
		}
	}
}

// Outcome is the verifier's verdict on a task.
type Outcome uint8

const (
	OutcomeVerified Outcome = 1
	OutcomeFailed   Outcome = 2
	OutcomeCanceled Outcome = 3
)

func (o Outcome) String() string {
	switch o {
	case OutcomeVerified:
		return "verified"
	case OutcomeFailed:
		return "failed"
	case OutcomeCanceled:
		return "canceled"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Released is the verifier's verdict on one task of a group.
type Released struct {
	Index      uint32
	Outcome    Outcome
	Reason     string // why it failed, empty when verified
	Status     ResultStatus
	ExitCode   uint32
	Result     cid.Cid
	ResultSize uint64
	Holders    []peer.ID // workers that hold the verified result blob
	Inline     []byte    // the encoded Output when small
	Charged    Micros    // what the consumer paid for this task
	Replicas   uint16    // replicas that agreed
}

func (t *Released) encode(w *writer) {
	w.u32(t.Index)
	w.u8(uint8(t.Outcome))
	w.str(t.Reason)
	w.u8(uint8(t.Status))
	w.u32(t.ExitCode)
	w.cid(t.Result)
	w.u64(t.ResultSize)
	w.u32(uint32(len(t.Holders)))
	for _, h := range t.Holders {
		w.peer(h)
	}
	w.bytes(t.Inline)
	w.i64(int64(t.Charged))
	w.u16(t.Replicas)
}
func (t *Released) decode(r *reader) {
	t.Index = r.u32()
	t.Outcome = Outcome(r.u8())
	t.Reason = r.str(MaxTextLen)
	t.Status = ResultStatus(r.u8())
	t.ExitCode = r.u32()
	t.Result = r.cid()
	t.ResultSize = r.u64()
	n := r.count(MaxReplicas * 2)
	if n > 0 {
		t.Holders = make([]peer.ID, n)
		for i := range t.Holders {
			t.Holders[i] = r.peer()
		}
	}
	t.Inline = r.bytes(MaxInline)
	t.Charged = Micros(r.i64())
	t.Replicas = r.u16()
	if t.Outcome < OutcomeVerified || t.Outcome > OutcomeCanceled {
		r.fail("unknown outcome %d", t.Outcome)
	}
	if t.Status > statusMax {
		r.fail("unknown status %d", t.Status)
	}
	if t.Charged < 0 {
		r.fail("negative charge")
	}
	checkInline(r, t.Result, t.ResultSize, t.Inline)
}

// Release carries the verifier's verdicts on tasks of a group to the
// consumer that submitted it.
type Release struct {
	Group ID
	Seq   uint64
	Tasks []Released
}

func (*Release) Type() MsgType { return TypeRelease }
func (m *Release) encode(w *writer) {
	w.id16(m.Group)
	w.u64(m.Seq)
	w.u32(uint32(len(m.Tasks)))
	for i := range m.Tasks {
		m.Tasks[i].encode(w)
	}
}
func (m *Release) decode(r *reader) {
	m.Group = r.id16()
	m.Seq = r.u64()
	n := r.count(MaxTasksPerMessage)
	if n > 0 {
		m.Tasks = make([]Released, n)
		for i := range m.Tasks {
			m.Tasks[i].decode(r)
		}
	}
}

// Cancel asks the verifier to stop the unfinished tasks of a group and
// refund their escrow.
type Cancel struct {
	Consumer peer.ID
	Group    ID
	Time     int64 // unix ms
}

func (*Cancel) Type() MsgType { return TypeCancel }
func (m *Cancel) encode(w *writer) {
	w.peer(m.Consumer)
	w.id16(m.Group)
	w.i64(m.Time)
}
func (m *Cancel) decode(r *reader) {
	m.Consumer = r.peer()
	m.Group = r.id16()
	m.Time = r.i64()
}

// StatementRequest asks the verifier for the requester's account statement.
type StatementRequest struct {
	Peer  peer.ID
	Nonce ID
	Time  int64 // unix ms
}

func (*StatementRequest) Type() MsgType { return TypeStatementRequest }
func (m *StatementRequest) encode(w *writer) {
	w.peer(m.Peer)
	w.id16(m.Nonce)
	w.i64(m.Time)
}
func (m *StatementRequest) decode(r *reader) {
	m.Peer = r.peer()
	m.Nonce = r.id16()
	m.Time = r.i64()
}

// Statement is the verifier's signed statement of one peer's accounts.
type Statement struct {
	Peer    peer.ID
	Nonce   ID     // echoes the request
	Balance Micros // consumer: available
	Escrow  Micros // consumer: held for running work
	Spent   Micros // consumer: charged so far
	Earned  Micros // worker: earned in total
	Pending Micros // worker: earned, not yet paid out
	PaidOut Micros // worker: paid out
	Strikes uint32
	Rating  []byte // sealed Rating, when the peer is a rated worker
	Issued  int64  // unix ms
}

func (*Statement) Type() MsgType { return TypeStatement }
func (m *Statement) encode(w *writer) {
	w.peer(m.Peer)
	w.id16(m.Nonce)
	w.i64(int64(m.Balance))
	w.i64(int64(m.Escrow))
	w.i64(int64(m.Spent))
	w.i64(int64(m.Earned))
	w.i64(int64(m.Pending))
	w.i64(int64(m.PaidOut))
	w.u32(m.Strikes)
	w.bytes(m.Rating)
	w.i64(m.Issued)
}
func (m *Statement) decode(r *reader) {
	m.Peer = r.peer()
	m.Nonce = r.id16()
	m.Balance = Micros(r.i64())
	m.Escrow = Micros(r.i64())
	m.Spent = Micros(r.i64())
	m.Earned = Micros(r.i64())
	m.Pending = Micros(r.i64())
	m.PaidOut = Micros(r.i64())
	m.Strikes = r.u32()
	m.Rating = r.bytes(1024)
	m.Issued = r.i64()
}

// Ack answers a request on a stream: OK, or a refusal with a code and a
// one-line reason.
type Ack struct {
	Ref   ID // the request's group, assignment or nonce
	OK    bool
	Code  AckCode
	Error string
	Count uint32 // e.g. tasks accepted
	Data  []byte // a sealed envelope when the answer carries one (rating)
}

// AckCode classifies a refusal.
type AckCode uint16

const (
	AckOK                AckCode = 0
	AckBadRequest        AckCode = 1
	AckUnauthorized      AckCode = 2
	AckInsufficientFunds AckCode = 3
	AckNoWorkers         AckCode = 4
	AckBusy              AckCode = 5
	AckPriceTooLow       AckCode = 6
	AckExpired           AckCode = 7
	AckReplay            AckCode = 8
	AckUnknown           AckCode = 9
	AckInternal          AckCode = 10
	AckInvalidModule     AckCode = 11
)

func (*Ack) Type() MsgType { return TypeAck }
func (m *Ack) encode(w *writer) {
	w.id16(m.Ref)
	w.boolean(m.OK)
	w.u16(uint16(m.Code))
	w.str(m.Error)
	w.u32(m.Count)
	w.bytes(m.Data)
}
func (m *Ack) decode(r *reader) {
	m.Ref = r.id16()
	m.OK = r.boolean()
	m.Code = AckCode(r.u16())
	m.Error = r.str(MaxTextLen)
	m.Count = r.u32()
	m.Data = r.bytes(MaxGossipSize)
	if m.OK != (m.Code == AckOK) {
		r.fail("ack ok=%v with code %d", m.OK, m.Code)
	}
}

// Output is a job's whole result: the bytes stored as the result blob, whose
// CID replicas are compared on.
type Output struct {
	Status   ResultStatus
	ExitCode uint32
	Message  string // trap message or missing import, empty when OK
	Stdout   []byte
	Stderr   []byte
}

// EncodeOutput returns the canonical bytes of an output.
func EncodeOutput(o *Output) []byte {
	w := writer{b: make([]byte, 0, 32+len(o.Message)+len(o.Stdout)+len(o.Stderr))}
	w.u8(1) // output format version
	w.u8(uint8(o.Status))
	w.u32(o.ExitCode)
	w.str(o.Message)
	w.bytes(o.Stdout)
	w.bytes(o.Stderr)
	return w.b
}

// DecodeOutput parses a result blob.
func DecodeOutput(b []byte) (*Output, error) {
	r := reader{b: b}
	if v := r.u8(); r.err == nil && v != 1 {
		return nil, fmt.Errorf("%w: output version %d", ErrBadVersion, v)
	}
	o := &Output{}
	o.Status = ResultStatus(r.u8())
	o.ExitCode = r.u32()
	o.Message = r.str(MaxTextLen)
	o.Stdout = r.bytes(MaxBlobSize)
	o.Stderr = r.bytes(MaxStderr)
	if o.Status > statusMax {
		r.fail("unknown status %d", o.Status)
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return o, nil
}

func encodeStrings(w *writer, ss []string) {
	w.u32(uint32(len(ss)))
	for _, s := range ss {
		w.str(s)
	}
}

func decodeStrings(r *reader, maxN, maxLen int) []string {
	n := r.count(maxN)
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.str(maxLen)
	}
	return out
}

func checkReplicas(r *reader, n uint8) {
	if n < 1 || n > MaxReplicas {
		r.fail("replicas %d out of range 1..%d", n, MaxReplicas)
	}
}

// checkInline refuses inline bytes that do not match their CID and size.
func checkInline(r *reader, c cid.Cid, size uint64, inline []byte) {
	if r.err != nil || len(inline) == 0 {
		return
	}
	if uint64(len(inline)) != size {
		r.fail("inline bytes %d, size says %d", len(inline), size)
		return
	}
	if err := VerifyBlob(c, inline); err != nil {
		r.fail("inline bytes: %v", err)
	}
}
