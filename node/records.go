package node

import (
	"encoding/binary"
	"encoding/json"

	"github.com/aspen-market/aspen/protocol"
)

// Store namespaces used by the node. Records are JSON: they are small,
// written in batches through the store's group commit, and read by people
// debugging a data directory.
const (
	nsGroup      = "group"      // consumer: GroupRecord by group ID
	nsTask       = "task"       // consumer: TaskRecord by group ID + index
	nsAssignment = "assignment" // worker: AssignmentRecord by assignment ID
	nsJob        = "job"        // worker: JobRecord by time-ordered key
	nsMeta       = "meta"       // both: rating, counters
	nsDone       = "done"       // consumer: task index (u32) by group ID + u32 finish sequence
	nsFinMark    = "finmark"    // consumer: finish numbers reserved durably (u32) by group ID
)

// Task states on the consumer side. A task is "verified" only when the
// verifier has compared its replicas and released the result, and the result
// bytes are stored here.
const (
	TaskPending  = "pending"  // submitted, not yet verified
	TaskFetching = "fetching" // verified; result being fetched from a holder
	TaskVerified = "verified" // verified and the result is stored locally
	TaskFailed   = "failed"   // the verifier gave up: Reason says why
	TaskCanceled = "canceled" // canceled by the consumer
)

// GroupRecord is a consumer's job group.
type GroupRecord struct {
	ID         string          `json:"id"`
	Module     string          `json:"module"`
	ModuleSize uint64          `json:"module_size"`
	Tasks      int             `json:"tasks"`
	MaxPrice   protocol.Micros `json:"max_price"`
	MinSpeed   protocol.Speed  `json:"min_speed"`
	Replicas   int             `json:"replicas"`
	TimeoutMS  uint64          `json:"timeout_ms"`
	MaxMemory  uint64          `json:"max_memory"`
	Created    int64           `json:"created"`
	Submitted  int             `json:"submitted"` // tasks acknowledged by the verifier
	Canceled   bool            `json:"cancel_requested,omitempty"`
	Error      string          `json:"error,omitempty"` // a refusal of the whole group
	Name       string          `json:"name,omitempty"`
}

// TaskRecord is one task of a consumer's group.
type TaskRecord struct {
	Index    uint32                `json:"index"`
	Input    string                `json:"input"`
	Size     uint64                `json:"size"`
	Data     []byte                `json:"data,omitempty"` // the input itself when ≤ protocol.MaxInline
	State    string                `json:"state"`
	Reason   string                `json:"reason,omitempty"`
	Status   protocol.ResultStatus `json:"status"`
	ExitCode uint32                `json:"exit_code"`
	Result   string                `json:"result,omitempty"`
	Holders  []string              `json:"holders,omitempty"`
	Charged  protocol.Micros       `json:"charged"`
	Replicas uint16                `json:"replicas,omitempty"`
	Updated  int64                 `json:"updated"`
	// Seq is the task's finish sequence number in its group: the n-th
	// task of the group to become final (verified, failed or canceled) has
	// Seq n; 0 until then. It is written with the final state and the
	// nsDone index entry in one transaction, and is what the results
	// cursor counts in.
	Seq uint32 `json:"seq,omitempty"`
}

// AssignmentRecord is an accepted assignment on a worker: the verifier's
// sealed envelope (so it can be re-verified after a restart) and which of
// its tasks are done.
type AssignmentRecord struct {
	Sealed   []byte          `json:"sealed"`
	Received int64           `json:"received"`
	Done     map[uint32]bool `json:"done,omitempty"` // by position in Tasks
	Reported bool            `json:"reported,omitempty"`
}

// JobRecord is one replica a worker ran: its job history.
type JobRecord struct {
	Assignment string                `json:"assignment"`
	Group      string                `json:"group"`
	Index      uint32                `json:"index"`
	Replica    uint16                `json:"replica"`
	Consumer   string                `json:"consumer"`
	Price      protocol.Micros       `json:"price"`
	Status     protocol.ResultStatus `json:"status"`
	StatusText string                `json:"status_text"`
	ExitCode   uint32                `json:"exit_code"`
	ExecMicros uint64                `json:"exec_micros"`
	Work       uint64                `json:"work,omitempty"` // metered standard work units
	Result     string                `json:"result"`
	Started    int64                 `json:"started"`
	Finished   int64                 `json:"finished"`
	// Value is the price for the metered work at the worker's rated speed:
	// what the job is worth if the verifier pays it in full (the
	// verifier's statement is authoritative).
	Value protocol.Micros `json:"value"`
}

func taskKey(group protocol.ID, index uint32) []byte {
	k := make([]byte, 20)
	copy(k, group[:])
	binary.BigEndian.PutUint32(k[16:], index)
	return k
}

// doneKey is the nsDone key of a group's seq-th finished task.
func doneKey(group protocol.ID, seq uint32) []byte { return taskKey(group, seq) }

func jobKey(t int64, asg protocol.ID, pos int) []byte {
	k := make([]byte, 0, 28)
	k = binary.BigEndian.AppendUint64(k, uint64(t))
	k = append(k, asg[:]...)
	k = binary.BigEndian.AppendUint32(k, uint32(pos))
	return k
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // records are plain structs
	}
	return b
}
