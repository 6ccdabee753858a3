package wasmmeter

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// CounterExport names the exported i64 global that holds the budget
	// not yet spent.
	CounterExport = "aspen:work"
	// StartExport names the export of the module's start function, if it
	// had one (see the package documentation).
	StartExport = "aspen:start"
	// Version changes whenever the pass or its costs change what a module
	// counts, so that caches of instrumented modules can be keyed by it.
	Version = 2
)

// TicksPerUnit is how many ticks, the counter's unit, make one standard
// work unit. Costs are in ticks so that a plain instruction can cost less
// than a unit: a machine of speed 1.0 performs 1e9 units, 16e9 ticks, per
// second.
const TicksPerUnit = 16

// Costs in ticks (see the package documentation). The sized parts of the
// bulk operations are per byte (memory), per element (tables) or per
// vector entry (WASI I/O).
const (
	CostFree          = 0
	CostInstruction   = 1
	CostCall          = 8
	CostCallIndirect  = 16
	CostHostCall      = 512 // and memory.grow, which calls into the host too
	CostIntDivision   = 8
	CostFloatDivision = 4
	CostBulk          = 256   // memory.fill, .copy, .init; table.grow, .fill, .copy, .init
	CostPerPage       = 65536 // memory.grow, per 64 KiB page requested
	CostPerByte       = 1     // memory.fill, .copy, .init
	CostPerElement    = 8     // table.grow, .fill, .copy, .init
	CostPerRandomByte = 16    // WASI random_get
	CostPerIOVec      = 64    // WASI calls that walk a vector of iovecs or subscriptions
)

// ErrMalformed is wrapped by every refusal.
var ErrMalformed = errors.New("cannot meter module")

// Stats describes what Instrument inserted.
type Stats struct {
	Functions int // function bodies instrumented
	Charges   int // metered blocks charged
	Checks    int // budget checks (function entries, loop headers)
	Sized     int // run-time charges by a size operand
	// LoopsMerged counts loops whose header block's cost moved to the
	// blocks that enter it (see the package documentation).
	LoopsMerged int
}

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// sectionOrder is each known section's place in a module (custom sections
// may go anywhere).
var sectionOrder = [...]int{
	secType: 2, secImport: 4, secFunction: 6, secTable: 8, secMemory: 10, secTag: 11,
	secGlobal: 12, secExport: 14, secStart: 16, secElement: 18, secDataCount: 19, secCode: 20, secData: 22,
}

var sectionNames = [...]string{"custom", "type", "import", "function", "table", "memory", "global",
	"export", "start", "element", "code", "data", "data count", "tag"}

// funcType is a function signature: its parameter types (the first byte
// of each) and its number of results.
type funcType struct {
	params  []byte
	results int
}

// dynCost is a charge computed at run time from a size operand: units =
// size << shift (size >> -shift if shift < 0). above are the types of the
// values on the stack above the size operand, deepest first: they are put
// aside in scratch locals while the charge is made and then put back.
type dynCost struct {
	shift int8
	above []byte
}

// Run-time charges of the memory and table instructions, whose size
// operand is on top of the stack.
var (
	dynMemoryGrow = &dynCost{shift: 16} // × CostPerPage
	dynBulkMemory = &dynCost{shift: 0}  // × CostPerByte
	dynTable      = &dynCost{shift: 3}  // × CostPerElement
)

// wasiSized lists the WASI functions whose host work grows with one
// argument: the index of that parameter and the charge's shift.
var wasiSized = map[string]struct {
	param int
	shift int8
}{
	"random_get":  {1, 4}, // × CostPerRandomByte
	"fd_read":     {2, 6}, // × CostPerIOVec
	"fd_write":    {2, 6},
	"fd_pread":    {2, 6},
	"fd_pwrite":   {2, 6},
	"sock_recv":   {2, 6},
	"sock_send":   {2, 6},
	"poll_oneoff": {2, 6},
}

// module is what the pass needs to know about a module.
type module struct {
	types       []funcType
	importFuncs []importFunc
	funcs       []uint32 // type index of each defined function
	globals     uint32   // imported and defined
	start       int64    // start function index, -1 for none
	exports     []byte   // export section body, nil for none
	nExports    uint32
	globalSec   []byte // global section body, nil for none
	nGlobalDefs uint32
}

type importFunc struct {
	typ uint32
	dyn *dynCost // nil: a fixed charge
}

type section struct {
	id   byte
	body []byte
}

// Instrument returns bin rewritten to count its work (see the package
// documentation) and what it inserted. A refusal wraps ErrMalformed and
// says what is wrong in one line.
func Instrument(bin []byte) ([]byte, Stats, error) {
	var st Stats
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" || string(bin[4:8]) != "\x01\x00\x00\x00" {
		return nil, st, fmt.Errorf("%w: not a WebAssembly 1.0 binary", ErrMalformed)
	}
	var (
		sections []section
		m        = module{start: -1}
		code     []byte
		hasCode  bool
		last     = 0
	)
	r := reader{b: bin[8:]}
	for len(r.b) > 0 {
		id := r.byte()
		body := r.take(r.u32("section size"), "section")
		if r.err != nil {
			return nil, st, fmt.Errorf("%w: %w", ErrMalformed, r.err)
		}
		if id != secCustom {
			if int(id) >= len(sectionOrder) || sectionOrder[id] == 0 {
				return nil, st, fmt.Errorf("%w: unknown section %d", ErrMalformed, id)
			}
			if sectionOrder[id] <= last {
				return nil, st, fmt.Errorf("%w: section %d out of order or repeated", ErrMalformed, id)
			}
			last = sectionOrder[id]
		}
		if err := m.read(id, body); err != nil {
			return nil, st, fmt.Errorf("%w: %s section: %w", ErrMalformed, sectionNames[id], err)
		}
		if id == secCode {
			code, hasCode = body, true
		}
		sections = append(sections, section{id, body})
	}
	if !hasCode && len(m.funcs) > 0 {
		return nil, st, fmt.Errorf("%w: %d functions without a code section", ErrMalformed, len(m.funcs))
	}
	if m.start >= 0 {
		t, ok := m.funcType(uint32(m.start))
		if !ok {
			return nil, st, fmt.Errorf("%w: start function %d does not exist", ErrMalformed, m.start)
		}
		if len(t.params) != 0 || t.results != 0 {
			return nil, st, fmt.Errorf("%w: start function %d takes or returns values", ErrMalformed, m.start)
		}
	}
	var newCode []byte
	if hasCode {
		var err error
		if newCode, err = m.instrumentCode(code, &st); err != nil {
			return nil, st, fmt.Errorf("%w: code section: %w", ErrMalformed, err)
		}
	}

	// The counter: (global i64 (mut) (i64.const 0)), set by the host.
	counter := m.globals
	globals := binary.AppendUvarint(nil, uint64(m.nGlobalDefs)+1)
	globals = append(globals, m.globalSec...)
	globals = append(globals, 0x7e, 0x01, 0x42, 0x00, 0x0b)
	exports := binary.AppendUvarint(nil, uint64(m.nExports)+1+boolInt(m.start >= 0))
	exports = append(exports, m.exports...)
	exports = appendName(exports, CounterExport)
	exports = binary.AppendUvarint(append(exports, 3), uint64(counter))
	if m.start >= 0 {
		exports = appendName(exports, StartExport)
		exports = binary.AppendUvarint(append(exports, 0), uint64(m.start))
	}

	out := make([]byte, 0, len(bin)+len(newCode)-len(code)+64)
	out = append(out, bin[:8]...)
	placed := [2]bool{}
	place := func(upTo int) {
		if !placed[0] && sectionOrder[secGlobal] < upTo {
			out = appendSection(out, secGlobal, globals)
			placed[0] = true
		}
		if !placed[1] && sectionOrder[secExport] < upTo {
			out = appendSection(out, secExport, exports)
			placed[1] = true
		}
	}
	for _, s := range sections {
		switch s.id {
		case secCustom: // dropped: nothing the sandbox runs uses names or debug information
			continue
		case secGlobal:
			place(sectionOrder[secGlobal])
			out = appendSection(out, secGlobal, globals)
			placed[0] = true
			continue
		case secExport:
			place(sectionOrder[secExport])
			out = appendSection(out, secExport, exports)
			placed[1] = true
			continue
		}
		place(sectionOrder[s.id])
		switch s.id {
		case secStart: // dropped: exported instead
		case secCode:
			out = appendSection(out, secCode, newCode)
		default:
			out = appendSection(out, s.id, s.body)
		}
	}
	place(1 << 30)
	return out, st, nil
}

func boolInt(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func appendName(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendSection(b []byte, id byte, body []byte) []byte {
	b = binary.AppendUvarint(append(b, id), uint64(len(body)))
	return append(b, body...)
}

// funcType returns the type of function idx (imported functions first).
func (m *module) funcType(idx uint32) (funcType, bool) {
	var t uint32
	switch {
	case uint64(idx) < uint64(len(m.importFuncs)):
		t = m.importFuncs[idx].typ
	case uint64(idx)-uint64(len(m.importFuncs)) < uint64(len(m.funcs)):
		t = m.funcs[idx-uint32(len(m.importFuncs))]
	default:
		return funcType{}, false
	}
	if uint64(t) >= uint64(len(m.types)) {
		return funcType{}, false
	}
	return m.types[t], true
}

// read takes in what the pass needs from one section.
func (m *module) read(id byte, body []byte) error {
	r := &reader{b: body}
	switch id {
	case secType:
		n := r.count("types", 3)
		m.types = make([]funcType, 0, n)
		for range n {
			if form := r.byte(); form != 0x60 && r.err == nil {
				return fmt.Errorf("unsupported type form 0x%x", form)
			}
			var t funcType
			for range r.count("parameters", 1) {
				t.params = append(t.params, r.valtype())
			}
			t.results = r.count("results", 1)
			for range t.results {
				r.valtype()
			}
			m.types = append(m.types, t)
		}
	case secImport:
		for range r.count("imports", 4) {
			mod, name := r.name(), r.name()
			switch kind := r.byte(); kind {
			case 0:
				f := importFunc{typ: r.u32("type index")}
				if mod == "wasi_snapshot_preview1" && r.err == nil {
					f.dyn = m.wasiCost(name, f.typ)
				}
				m.importFuncs = append(m.importFuncs, f)
			case 1:
				r.valtype()
				r.limits()
			case 2:
				r.limits()
			case 3:
				r.valtype()
				r.byte()
				m.globals++
			case 4:
				r.byte()
				r.u32("type index")
			default:
				if r.err == nil {
					return fmt.Errorf("unknown import kind %d", kind)
				}
			}
		}
	case secFunction:
		n := r.count("functions", 1)
		m.funcs = make([]uint32, 0, n)
		for range n {
			m.funcs = append(m.funcs, r.u32("type index"))
		}
	case secGlobal:
		n := r.count("globals", 3)
		m.nGlobalDefs = uint32(n)
		m.globalSec = r.b
		own := m.globals + uint32(n) // the counter's index: nothing may name it
		for range n {
			r.valtype()
			r.byte()
			r.constExpr(own)
		}
		m.globals = own
	case secExport:
		n := r.count("exports", 3)
		m.nExports = uint32(n)
		m.exports = r.b
		for range n {
			name := r.name()
			kind := r.byte()
			idx := r.u32("export index")
			if r.err != nil {
				break
			}
			if name == CounterExport || name == StartExport {
				return fmt.Errorf("export name %q is reserved by the sandbox", name)
			}
			if kind == 3 && idx >= m.globals { // would export the counter
				return fmt.Errorf("export %q of global %d out of range", name, idx)
			}
		}
	case secStart:
		m.start = int64(r.u32("start function"))
	default:
		return nil // copied as they are; wazero checks them
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d bytes after the last entry", len(r.b))
	}
	return nil
}

// wasiCost returns the run-time charge of a call to the WASI function
// name of type typ, or nil if it has a fixed cost (or not the signature
// the charge expects: the sandbox refuses such an import anyway).
func (m *module) wasiCost(name string, typ uint32) *dynCost {
	s, ok := wasiSized[name]
	if !ok || uint64(typ) >= uint64(len(m.types)) {
		return nil
	}
	params := m.types[typ].params
	if s.param >= len(params) || params[s.param] != i32 {
		return nil
	}
	for _, t := range params[s.param+1:] {
		if t != i32 && t != i64 && t != f32 && t != f64 {
			return nil
		}
	}
	return &dynCost{shift: s.shift, above: params[s.param+1:]}
}

// instrumentCode returns the code section with every body instrumented.
func (m *module) instrumentCode(body []byte, st *Stats) ([]byte, error) {
	r := &reader{b: body}
	n := r.count("functions", 2)
	if r.err != nil {
		return nil, r.err
	}
	if n != len(m.funcs) {
		return nil, fmt.Errorf("%d function bodies for %d functions", n, len(m.funcs))
	}
	out := make([]byte, 0, len(body)+len(body)/4+64)
	out = binary.AppendUvarint(out, uint64(n))
	f := &fnMeter{m: m, counter: binary.AppendUvarint(nil, uint64(m.globals))}
	for i := range n {
		fb := r.take(r.u32("function size"), "function body")
		if r.err != nil {
			return nil, r.err
		}
		t := m.funcs[i]
		if uint64(t) >= uint64(len(m.types)) {
			return nil, fmt.Errorf("function %d: type index %d out of range", i, t)
		}
		var err error
		if out, err = f.instrument(out, fb, len(m.types[t].params), st); err != nil {
			return nil, fmt.Errorf("function %d: %w", len(m.importFuncs)+i, err)
		}
		st.Functions++
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last function body", len(r.b))
	}
	return out, nil
}
