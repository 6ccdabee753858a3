package client

import (
	"fmt"
	"time"

	"github.com/aspen-market/aspen/protocol/units"
)

// Task states, as reported by the node for each task of a group.
const (
	StatePending  = "pending"  // submitted, not yet verified
	StateFetching = "fetching" // verified; the node is fetching the result
	StateVerified = "verified" // verified; the result is on the node
	StateFailed   = "failed"   // the verifier gave up on the task (see Reason)
	StateCanceled = "canceled" // canceled by the consumer
)

// Job statuses: how a verified job run ended (TaskResult.Status).
const (
	StatusOK            = "ok"             // exited 0
	StatusExit          = "exit"           // exited non-zero
	StatusTrap          = "trap"           // wasm trap
	StatusTimeout       = "timeout"        // running time limit reached
	StatusMemoryLimit   = "memory-limit"   // memory cap reached
	StatusOutputLimit   = "output-limit"   // stdout cap reached
	StatusInvalidModule = "invalid-module" // module does not compile
	StatusMissingImport = "missing-import" // module imports what the sandbox does not give
	StatusFetchFailed   = "fetch-failed"   // workers could not fetch module or input
	StatusWorkLimit     = "work-limit"     // metered work reached the job's work budget
)

// Finished reports whether a task in this state will not change any more.
func Finished(state string) bool {
	return state == StateVerified || state == StateFailed || state == StateCanceled
}

// Info describes a node (GET /v1/info).
type Info struct {
	PeerID   string       `json:"peer_id"`
	Addrs    []string     `json:"addrs"`
	Role     string       `json:"role"` // worker, consumer or both
	Verifier string       `json:"verifier"`
	MinPrice units.Micros `json:"min_price,omitempty"` // worker: per hour
	Slots    int          `json:"slots,omitempty"`
	Rating   *Rating      `json:"rating,omitempty"` // worker: the verifier's rating
	Version  string       `json:"version"`          // the API's version
	Build    string       `json:"build,omitempty"`  // the node binary's build: module version, Go version, commit
	Network  Network      `json:"network"`          // how peers reach it
}

// Network is how peers reach the node and how it is connected to the
// verifier (GET /v1/info "network"; docs/operations.md, "Ports, NAT and
// relays").
type Network struct {
	Status       string    `json:"status"`  // public, private (behind NAT) or unknown
	Inbound      string    `json:"inbound"` // how peers reach it: direct, relayed, none or unknown
	Public       []string  `json:"public,omitempty"`
	Reachable    []string  `json:"reachable,omitempty"`
	Unreachable  []string  `json:"unreachable,omitempty"`
	Relays       []string  `json:"relays,omitempty"` // relayed addresses (reservations held)
	AutoNAT      string    `json:"autonat"`
	Since        time.Time `json:"since"`
	VerifierPath string    `json:"verifier_path"` // direct, hole-punched, relayed or none
}

// SubmitRequest is the body of POST /v1/groups. Money and speed are decimal
// strings ("0.04", "1.0"); Module is the CID of an uploaded blob.
type SubmitRequest struct {
	Name      string  `json:"name,omitempty"`
	Module    string  `json:"module"`
	Inputs    []Input `json:"inputs"`
	MaxPrice  string  `json:"max_price"`           // per hour
	MinSpeed  string  `json:"min_speed,omitempty"` // "" means any
	Replicas  int     `json:"replicas,omitempty"`  // 0 means 2
	Timeout   string  `json:"timeout,omitempty"`   // Go duration; "" means the node's default (2h)
	MaxMemory uint64  `json:"max_memory,omitempty"`
}

// Input is one task input: either the CID of an uploaded blob or the bytes
// themselves (sent base64 in JSON).
type Input struct {
	CID  string `json:"cid,omitempty"`
	Data []byte `json:"data,omitempty"`
}

// SubmitResponse answers POST /v1/groups.
type SubmitResponse struct {
	ID     string `json:"id"`
	Status Group  `json:"status"`
}

// Group is a job group's record and progress (GET /v1/groups/{id}).
type Group struct {
	ID         string       `json:"id"`
	Name       string       `json:"name,omitempty"`
	Module     string       `json:"module"`
	ModuleSize uint64       `json:"module_size"`
	Tasks      int          `json:"tasks"`
	MaxPrice   units.Micros `json:"max_price"`
	MinSpeed   units.Speed  `json:"min_speed"`
	Replicas   int          `json:"replicas"`
	TimeoutMS  uint64       `json:"timeout_ms"`
	MaxMemory  uint64       `json:"max_memory"`
	Created    int64        `json:"created"`   // unix ms
	Submitted  int          `json:"submitted"` // tasks acknowledged by the verifier
	Error      string       `json:"error,omitempty"`

	Pending  int          `json:"pending"`
	Fetching int          `json:"fetching"`
	Verified int          `json:"verified"`
	Failed   int          `json:"failed"`
	Canceled int          `json:"canceled"`
	Spent    units.Micros `json:"spent"`
	Done     bool         `json:"done"`
	State    string       `json:"state"` // running, canceling, verified, finished with failures
}

// Finished is the number of tasks that will not change any more.
func (g *Group) Finished() int { return g.Verified + g.Failed + g.Canceled }

// CreatedTime is Created as a time.
func (g *Group) CreatedTime() time.Time { return time.UnixMilli(g.Created) }

// Task is one task of a group (GET /v1/groups/{id}/tasks).
type Task struct {
	Index    uint32       `json:"index"`
	Input    string       `json:"input"` // CID
	Size     uint64       `json:"size"`
	Data     []byte       `json:"data,omitempty"` // the input itself when small (≤ 4 KiB)
	State    string       `json:"state"`
	Reason   string       `json:"reason,omitempty"`
	Status   JobStatus    `json:"status"`
	ExitCode uint32       `json:"exit_code"`
	Result   string       `json:"result,omitempty"` // CID of the encoded output
	Holders  []string     `json:"holders,omitempty"`
	Charged  units.Micros `json:"charged"`
	Replicas uint16       `json:"replicas,omitempty"`
	Updated  int64        `json:"updated"` // unix ms
}

// TaskResult is one entry of GET /v1/groups/{id}/results: a task's state
// and, when verified, its output.
type TaskResult struct {
	Index    uint32       `json:"index"`
	Seq      uint32       `json:"seq,omitempty"` // finish number: the Seq-th task of the group to finish (0: not finished)
	State    string       `json:"state"`
	Reason   string       `json:"reason,omitempty"`
	Status   string       `json:"status,omitempty"` // when verified: ok, exit, trap, ...
	ExitCode uint32       `json:"exit_code"`
	Message  string       `json:"message,omitempty"`
	Stdout   []byte       `json:"stdout,omitempty"`
	Stderr   []byte       `json:"stderr,omitempty"`
	Result   string       `json:"result,omitempty"`
	Charged  units.Micros `json:"charged"`
}

// ResultsPage answers GET /v1/groups/{id}/results?since=CURSOR: results
// in the order their tasks finished, after the cursor.
type ResultsPage struct {
	Results []TaskResult `json:"results"`
	// Next is the cursor to ask with next: what finished after these.
	Next string `json:"next"`
	// More: more results have finished already (the answer was full).
	More bool `json:"more"`
	// Done: every task of the group is final and listed up to Next.
	Done bool `json:"done"`
	// Group is the group's progress when the node answered.
	Group Group `json:"group"`
}

// Peer is a connected peer (GET /v1/peers).
type Peer struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
	// Topics are the gossip topics the node knows the peer subscribes to.
	Topics []string `json:"topics,omitempty"`
}

// Offer is a worker's offer seen on gossip (GET /v1/offers).
type Offer struct {
	Worker   string       `json:"worker"`
	MinPrice units.Micros `json:"min_price"` // per hour
	Capacity uint32       `json:"capacity"`
	Slots    uint32       `json:"slots"`
	Rating   *Rating      `json:"rating,omitempty"`
	Expires  int64        `json:"expires"` // unix ms
	Seen     int64        `json:"seen"`    // unix ms
}

// Job is one replica a worker ran (GET /v1/jobs): its job history.
type Job struct {
	Assignment string       `json:"assignment"`
	Group      string       `json:"group"`
	Index      uint32       `json:"index"`
	Replica    uint16       `json:"replica"`
	Consumer   string       `json:"consumer"`
	Price      units.Micros `json:"price"` // per hour
	Status     JobStatus    `json:"status"`
	StatusText string       `json:"status_text"`
	ExitCode   uint32       `json:"exit_code"`
	ExecMicros uint64       `json:"exec_micros"`
	Result     string       `json:"result"`
	Started    int64        `json:"started"`  // unix ms
	Finished   int64        `json:"finished"` // unix ms
	// Value is what the job is worth if the verifier pays it in full; the
	// verifier's Statement is authoritative.
	Value units.Micros `json:"value"`
}

// Statement is the verifier's signed account statement for the node
// (GET /v1/balance), relayed by the node. Amounts are micro-units.
type Statement struct {
	Peer    string       `json:"Peer"`
	Balance units.Micros `json:"Balance"` // consumer: available
	Escrow  units.Micros `json:"Escrow"`  // consumer: held for running work
	Spent   units.Micros `json:"Spent"`   // consumer: charged so far
	Earned  units.Micros `json:"Earned"`  // worker: earned in total
	Pending units.Micros `json:"Pending"` // worker: earned, not yet paid out
	PaidOut units.Micros `json:"PaidOut"` // worker: paid out
	Strikes uint32       `json:"Strikes"`
	// Rating is the worker's rating sealed (signed) by the verifier, when a
	// rated worker: protocol.OpenAs checks the signature and decodes it
	// (that package brings the network stack, which this one does not).
	Rating []byte `json:"Rating,omitempty"`
	Issued int64  `json:"Issued"` // unix ms
}

// Rating is the verifier's rating of a worker, as the node shows it in
// Info and Offer (the JSON form of protocol.Rating).
type Rating struct {
	Worker         string      `json:"Worker"`
	Speed          units.Speed `json:"Speed"`          // milli standard units: 1000 is the reference machine
	ReliabilityPPM uint32      `json:"ReliabilityPPM"` // trust rating, 0..1_000_000
	Strikes        uint32      `json:"Strikes"`
	Issued         int64       `json:"Issued"`  // unix ms
	Expires        int64       `json:"Expires"` // unix ms
}

// JobStatus is how a job run ended, as a number on the wire (the API's
// form of protocol.ResultStatus); String gives the names of the Status*
// constants.
type JobStatus uint8

// jobStatusNames are protocol.ResultStatus's names, by value.
var jobStatusNames = [...]string{StatusOK, StatusExit, StatusTrap, StatusTimeout, StatusMemoryLimit, StatusOutputLimit,
	StatusInvalidModule, StatusMissingImport, StatusFetchFailed, StatusWorkLimit}

func (s JobStatus) String() string {
	if int(s) < len(jobStatusNames) {
		return jobStatusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}
