package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The guard reads a module's structure before wazero does. wazero's decoder
// allocates from counts and sizes in the binary before checking them
// against the bytes that follow (a 57-byte module can make it allocate
// 28 GB and kill the process), and lets a running module grow a table
// without bound on the host heap. So every count and size is checked here
// against the bytes left and against the implementation limits below
// (those of the WebAssembly JS API, what browsers accept, except tables,
// which are capped lower). The module wazero compiles is the input without
// its custom sections (names and debug information, which nothing in the
// sandbox uses) and with every table's maximum size capped at maxTableSize,
// so table.grow past it fails as the spec allows, identically everywhere.
//
// The guard also coalesces active data segments (see coalesceData): Go's
// linker emits one per run of non-zero bytes, 28,000 of them for a 2 MB
// module, and wazero evaluates each one's offset on every instantiation.
const (
	maxModuleSize   = 256 << 20
	maxTypes        = 1_000_000
	maxImports      = 100_000
	maxFunctions    = 1_000_000
	maxTables       = 100_000
	maxMemories     = 1
	maxGlobals      = 1_000_000
	maxExports      = 100_000
	maxElemSegments = 10_000_000
	maxDataSegments = 100_000
	maxParams       = 1000
	maxResults      = 1000
	maxLocals       = 50_000
	maxFunctionSize = 7_654_321
	maxTableSize    = 1 << 20
	// maxDataGap is the largest run of zero bytes coalesceData fills to
	// join two data segments.
	maxDataGap = 64
)

// wasmImport is one entry of a module's import section.
type wasmImport struct {
	module, name string
	kind         byte // 0 function, 1 table, 2 memory, 3 global, 4 tag
}

// importKinds names import kinds for messages.
var importKinds = [...]string{"a function", "a table", "a memory", "a global", "a tag"}

// moduleInfo is what the guard learns that wazero's CompiledModule does
// not tell: every import (tables and globals included) and whether the
// module has a start section (code that runs on instantiation).
type moduleInfo struct {
	imports  []wasmImport
	hasStart bool
}

// errMalformed is wrapped by every guard refusal.
var errMalformed = errors.New("malformed module")

var sectionNames = [...]string{"custom", "type", "import", "function", "table", "memory", "global",
	"export", "start", "element", "code", "data", "data count", "tag"}

// guard checks bin's structure and returns the binary to compile (see the
// comment above) and what it learnt. Refusals wrap errMalformed and say
// what is wrong in one line.
func guard(bin []byte) ([]byte, moduleInfo, error) {
	var info moduleInfo
	if len(bin) > maxModuleSize {
		return nil, info, fmt.Errorf("%w: module of %s is larger than %s", errMalformed, formatSize(uint64(len(bin))), formatSize(maxModuleSize))
	}
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" {
		return nil, info, fmt.Errorf("%w: invalid magic number", errMalformed)
	}
	if string(bin[4:8]) != "\x01\x00\x00\x00" {
		return nil, info, fmt.Errorf("%w: invalid version header", errMalformed)
	}
	type section struct {
		id   byte
		body []byte
	}
	var sections []section
	rewritten, dataCount := false, false
	r := wasmReader{b: bin[8:]}
	for len(r.b) > 0 {
		id := r.byte()
		size := r.u32("section size")
		body := r.take(size, "section")
		if r.err != nil {
			return nil, info, fmt.Errorf("%w: %w", errMalformed, r.err)
		}
		var err error
		switch id {
		case 0: // custom: dropped
			rewritten = true
			continue
		case 4:
			body, err = guardTables(body)
			rewritten = true
		default:
			err = guardSection(id, body, &info)
			dataCount = dataCount || id == 12
			if err == nil && id == 11 && !dataCount {
				if merged := coalesceData(body); merged != nil {
					body, rewritten = merged, true
				}
			}
		}
		if err != nil {
			name := fmt.Sprintf("%d", id)
			if int(id) < len(sectionNames) {
				name = sectionNames[id]
			}
			return nil, info, fmt.Errorf("%w: %s section: %w", errMalformed, name, err)
		}
		sections = append(sections, section{id, body})
	}
	if !rewritten {
		return bin, info, nil
	}
	out := make([]byte, 8, len(bin))
	copy(out, bin[:8])
	for _, s := range sections {
		out = append(out, s.id)
		out = binary.AppendUvarint(out, uint64(len(s.body)))
		out = append(out, s.body...)
	}
	return out, info, nil
}

// guardSection checks one section's body (not custom or table).
func guardSection(id byte, body []byte, info *moduleInfo) error {
	r := &wasmReader{b: body}
	switch id {
	case 1: // type
		for range r.count("types", maxTypes, 3) {
			if form := r.byte(); form != 0x60 && r.err == nil {
				return fmt.Errorf("unsupported type form 0x%x", form)
			}
			for range r.count("parameters", maxParams, 1) {
				r.valtype()
			}
			for range r.count("results", maxResults, 1) {
				r.valtype()
			}
		}
	case 2: // import
		for range r.count("imports", maxImports, 4) {
			im := wasmImport{module: r.name(), name: r.name(), kind: r.byte()}
			switch im.kind {
			case 0: // function: type index
				r.u32("type index")
			case 1: // table: reftype, limits
				r.valtype()
				r.limits()
			case 2: // memory: limits
				r.limits()
			case 3: // global: valtype, mutability
				r.valtype()
				r.byte()
			case 4: // tag: attribute, type index
				r.byte()
				r.u32("type index")
			default:
				if r.err == nil {
					return fmt.Errorf("unknown import kind %d", im.kind)
				}
			}
			info.imports = append(info.imports, im)
		}
	case 3: // function
		for range r.count("functions", maxFunctions, 1) {
			r.u32("type index")
		}
	case 5: // memory
		for range r.count("memories", maxMemories, 2) {
			r.limits()
		}
	case 6: // global
		for range r.count("globals", maxGlobals, 3) {
			r.valtype()
			r.byte()
			r.constExpr()
		}
	case 7: // export
		for range r.count("exports", maxExports, 3) {
			r.name()
			r.byte()
			r.u32("export index")
		}
	case 8: // start
		r.u32("start function")
		info.hasStart = true
	case 9: // element
		for range r.count("element segments", maxElemSegments, 2) {
			r.elementSegment()
		}
	case 10: // code
		for range r.count("functions", maxFunctions, 2) {
			size := r.u32("function size")
			if size > maxFunctionSize && r.err == nil {
				return fmt.Errorf("function of %d bytes (limit %d)", size, maxFunctionSize)
			}
			fn := wasmReader{b: r.take(size, "function body")}
			var locals uint64
			for range fn.count("local declarations", maxLocals, 2) {
				locals += uint64(fn.u32("local count"))
				fn.valtype()
				if locals > maxLocals {
					return fmt.Errorf("function with more than %d locals", maxLocals)
				}
			}
			if fn.err != nil {
				return fn.err
			}
		}
	case 11: // data
		for range r.count("data segments", maxDataSegments, 2) {
			switch flag := r.u32("data segment flags"); flag {
			case 0:
				r.constExpr()
			case 1:
			case 2:
				r.u32("memory index")
				r.constExpr()
			default:
				if r.err == nil {
					return fmt.Errorf("unknown data segment flags %d", flag)
				}
			}
			r.take(r.u32("data size"), "data")
		}
	case 12: // data count
		r.u32("data count")
	default: // tag and unknown sections: wazero refuses them before decoding
		return nil
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d bytes after the last entry", len(r.b))
	}
	return nil
}

// coalesceData returns a checked data section with each run of active
// segments for memory 0 at constant offsets, ascending and apart by at most
// maxDataGap bytes, joined into one segment (the gaps filled with zeros),
// or nil if no two segments can be joined. The memory a module starts with
// is the same, and nothing else can tell: without a data count section
// (the caller's condition) no instruction may name a data segment, and an
// instantiation with a segment out of bounds fails either way.
func coalesceData(body []byte) []byte {
	r := &wasmReader{b: body}
	n := r.count("data segments", maxDataSegments, 2)
	var (
		out        []byte
		count      uint64
		start, end uint64 // the pending run's memory range
		run        []byte // its bytes
		pending    bool
		merged     bool
	)
	flush := func() {
		if pending {
			out = append(out, 0, 0x41) // active, memory 0, i32.const
			out = appendSleb(out, int64(start))
			out = append(out, 0x0b)
			out = binary.AppendUvarint(out, uint64(len(run)))
			out = append(out, run...)
			count++
			pending = false
		}
	}
	for range n {
		seg := r.b
		flag := r.u32("data segment flags")
		off, simple := int64(0), false
		switch flag {
		case 0:
			off, simple = r.i32ConstExpr()
		case 2:
			r.u32("memory index")
			r.constExpr()
		}
		data := r.take(r.u32("data size"), "data")
		if r.err != nil {
			return nil
		}
		if !simple || off < 0 {
			flush()
			out = append(out, seg[:len(seg)-len(r.b)]...)
			count++
			continue
		}
		o := uint64(off)
		if pending && o >= end && o-end <= maxDataGap {
			run = append(run, make([]byte, o-end)...)
			run = append(run, data...)
			end = o + uint64(len(data))
			merged = true
			continue
		}
		flush()
		start, end, run, pending = o, o+uint64(len(data)), append([]byte(nil), data...), true
	}
	flush()
	if !merged || len(r.b) != 0 {
		return nil
	}
	return append(binary.AppendUvarint(nil, count), out...)
}

// appendSleb appends v as a signed LEB128.
func appendSleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// guardTables checks a table section and returns it with every table's
// maximum size capped at maxTableSize.
func guardTables(body []byte) ([]byte, error) {
	r := &wasmReader{b: body}
	n := r.count("tables", maxTables, 2)
	out := binary.AppendUvarint(nil, uint64(n))
	for range n {
		hasInit := len(r.b) > 0 && r.b[0] == 0x40 // table with an initializer
		if hasInit {
			r.byte()
			if r.byte() != 0 && r.err == nil {
				return nil, errors.New("bad table prefix")
			}
			out = append(out, 0x40, 0)
		}
		refType := r.b
		r.valtype()
		if r.err != nil {
			return nil, r.err
		}
		out = append(out, refType[:len(refType)-len(r.b)]...)
		flag, min, max, hasMax := r.limits()
		if r.err != nil {
			return nil, r.err
		}
		if min > maxTableSize {
			return nil, fmt.Errorf("table of %d elements (limit %d)", min, maxTableSize)
		}
		if !hasMax || max > maxTableSize {
			max = maxTableSize
		}
		out = append(out, flag|1)
		out = binary.AppendUvarint(out, uint64(min))
		out = binary.AppendUvarint(out, uint64(max))
		if hasInit {
			expr := r.b
			r.constExpr()
			out = append(out, expr[:len(expr)-len(r.b)]...)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last entry", len(r.b))
	}
	return out, nil
}

// wasmReader reads the binary format; the first error sticks and later
// reads return zero values.
type wasmReader struct {
	b   []byte
	err error
}

func (r *wasmReader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, a...)
	}
	r.b = nil
}

func (r *wasmReader) byte() byte {
	if len(r.b) == 0 {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// u32 reads an unsigned LEB128 of at most 32 bits.
func (r *wasmReader) u32(what string) uint32 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || n > 5 || v > 1<<32-1 {
		r.fail("bad %s", what)
		return 0
	}
	r.b = r.b[n:]
	return uint32(v)
}

// sleb skips a signed LEB128 of at most maxBytes bytes.
func (r *wasmReader) sleb(maxBytes int, what string) {
	for i := range maxBytes {
		if i >= len(r.b) {
			break
		}
		if r.b[i]&0x80 == 0 {
			r.b = r.b[i+1:]
			return
		}
	}
	r.fail("bad %s", what)
}

// take returns the next n bytes.
func (r *wasmReader) take(n uint32, what string) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)) {
		r.fail("%s of %d bytes runs past the end", what, n)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// count reads a vector length and checks it against the limit and against
// the bytes left, each entry taking at least minSize bytes.
func (r *wasmReader) count(what string, limit, minSize int) int {
	n := r.u32(what + " count")
	if r.err != nil {
		return 0
	}
	if uint64(n) > uint64(limit) {
		r.fail("%d %s (limit %d)", n, what, limit)
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(len(r.b)) {
		r.fail("%d %s in %d bytes", n, what, len(r.b))
		return 0
	}
	return int(n)
}

func (r *wasmReader) name() string { return string(r.take(r.u32("name length"), "name")) }

// valtype skips a value or reference type.
func (r *wasmReader) valtype() {
	if b := r.byte(); b == 0x63 || b == 0x64 { // (ref null? heaptype)
		r.sleb(5, "heap type")
	}
}

// limits reads limits: flags, minimum and optional maximum.
func (r *wasmReader) limits() (flag byte, min, max uint32, hasMax bool) {
	flag = r.byte()
	if flag > 3 && r.err == nil {
		r.fail("unknown limits flags 0x%x", flag)
		return
	}
	min = r.u32("minimum")
	if flag&1 != 0 {
		max, hasMax = r.u32("maximum"), true
	}
	return
}

// i32ConstExpr reads a constant expression and, if it is exactly
// i32.const v, returns v and true; any other is skipped as by constExpr.
func (r *wasmReader) i32ConstExpr() (v int64, simple bool) {
	if len(r.b) > 0 && r.b[0] == 0x41 {
		var shift uint
		for i := 1; i < len(r.b) && i <= 5; i++ {
			c := r.b[i]
			v |= int64(c&0x7f) << shift
			shift += 7
			if c&0x80 != 0 {
				continue
			}
			if c&0x40 != 0 {
				v |= -1 << shift
			}
			if i+1 < len(r.b) && r.b[i+1] == 0x0b && v >= math.MinInt32 && v <= math.MaxInt32 {
				r.b = r.b[i+2:]
				return v, true
			}
			break
		}
	}
	r.constExpr()
	return 0, false
}

// constExpr skips a constant expression up to and including its end.
func (r *wasmReader) constExpr() {
	for r.err == nil {
		switch op := r.byte(); op {
		case 0x0b: // end
			return
		case 0x41: // i32.const
			r.sleb(5, "i32 constant")
		case 0x42: // i64.const
			r.sleb(10, "i64 constant")
		case 0x43: // f32.const
			r.take(4, "f32 constant")
		case 0x44: // f64.const
			r.take(8, "f64 constant")
		case 0x23, 0xd2: // global.get, ref.func
			r.u32("index")
		case 0xd0: // ref.null
			r.sleb(5, "heap type")
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant arithmetic
		case 0xfd: // v128.const
			if sub := r.u32("vector opcode"); sub != 12 && r.err == nil {
				r.fail("instruction 0xfd %d in a constant expression", sub)
			}
			r.take(16, "v128 constant")
		default:
			if r.err == nil {
				r.fail("instruction 0x%x in a constant expression", op)
			}
		}
	}
}

// elementSegment skips one element segment.
func (r *wasmReader) elementSegment() {
	flags := r.u32("element segment flags")
	if flags > 7 {
		if r.err == nil {
			r.fail("unknown element segment flags %d", flags)
		}
		return
	}
	if flags&2 != 0 && flags&1 == 0 { // explicit table index
		r.u32("table index")
	}
	if flags&1 == 0 { // active: offset
		r.constExpr()
	}
	exprs := flags&4 != 0
	if flags&3 != 0 { // element kind or reference type
		if exprs {
			r.valtype()
		} else {
			r.byte()
		}
	}
	if exprs {
		for range r.count("element expressions", maxTableSize, 2) {
			r.constExpr()
		}
	} else {
		for range r.count("function indices", maxTableSize, 1) {
			r.u32("function index")
		}
	}
}
