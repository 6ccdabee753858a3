package wasmmeter

import (
	"encoding/binary"
	"fmt"
)

// mergeLoopHeaders enables endLoop's move of loop header costs (a
// variable so that tests can compare with and without).
var mergeLoopHeaders = true

// perInstruction, set by tests only, charges every instruction on its own
// just before it runs: a count exact by construction, the oracle the
// metered blocks are checked against.
var perInstruction = false

// maxLocals bounds a function's locals (the sandbox's guard allows 50,000);
// it keeps the scratch locals' indices far from overflow.
const maxLocals = 1 << 24

// Instruction kinds: how an opcode's immediates are read and what it does
// to control flow.
type opKind uint8

const (
	kInvalid opKind = iota
	kPlain
	kBlock
	kLoop
	kIf
	kElse
	kEnd
	kBr
	kBrIf
	kBrTable
	kStop // return, unreachable
	kCall
	kCallIndirect
	kSelectT
	kLocal
	kGlobal
	kU32 // table.get, table.set: one index
	kMem // loads and stores: memarg
	kMemZero
	kMemGrow
	kI32Const
	kI64Const
	kF32Const
	kF64Const
	kRefNull
	kPrefixFC
	kPrefixFD
)

type opInfo struct {
	kind opKind
	cost uint16
}

// ops describes every single-byte opcode of WebAssembly 2.0; the rest are
// kInvalid.
var ops = func() (t [256]opInfo) {
	set := func(kind opKind, cost uint16, codes ...byte) {
		for _, c := range codes {
			t[c] = opInfo{kind, cost}
		}
	}
	set(kStop, CostInstruction, 0x00, 0x0f) // unreachable, return
	set(kPlain, CostFree, 0x01)             // nop
	set(kBlock, CostFree, 0x02)
	set(kLoop, CostFree, 0x03)
	set(kIf, CostInstruction, 0x04)
	set(kElse, CostFree, 0x05)
	set(kEnd, CostFree, 0x0b)
	set(kBr, CostInstruction, 0x0c)
	set(kBrIf, CostInstruction, 0x0d)
	set(kBrTable, CostInstruction, 0x0e)
	set(kCall, CostCall, 0x10)
	set(kCallIndirect, CostCallIndirect, 0x11)
	set(kPlain, CostInstruction, 0x1a, 0x1b) // drop, select
	set(kSelectT, CostInstruction, 0x1c)
	set(kLocal, CostInstruction, 0x20, 0x21, 0x22)
	set(kGlobal, CostInstruction, 0x23, 0x24)
	set(kU32, CostInstruction, 0x25, 0x26) // table.get, table.set
	for c := 0x28; c <= 0x3e; c++ {
		set(kMem, CostInstruction, byte(c))
	}
	set(kMemZero, CostInstruction, 0x3f) // memory.size
	set(kMemGrow, CostHostCall, 0x40)
	set(kI32Const, CostInstruction, 0x41)
	set(kI64Const, CostInstruction, 0x42)
	set(kF32Const, CostInstruction, 0x43)
	set(kF64Const, CostInstruction, 0x44)
	for c := 0x45; c <= 0xc4; c++ { // numeric, conversions, sign extension
		set(kPlain, CostInstruction, byte(c))
	}
	set(kPlain, CostIntDivision, 0x6d, 0x6e, 0x6f, 0x70, 0x7f, 0x80, 0x81, 0x82)
	set(kPlain, CostFloatDivision, 0x91, 0x95, 0x9f, 0xa3) // f32.sqrt, f32.div, f64.sqrt, f64.div
	set(kRefNull, CostInstruction, 0xd0)
	set(kPlain, CostInstruction, 0xd1) // ref.is_null
	set(kU32, CostInstruction, 0xd2)   // ref.func
	set(kPrefixFC, CostInstruction, 0xfc)
	set(kPrefixFD, CostInstruction, 0xfd)
	return t
}()

// simdValid marks the opcodes of the 0xfd prefix (fixed-width SIMD).
var simdValid = func() (t [256]bool) {
	for c := range t {
		t[c] = true
	}
	for _, c := range []byte{0x9a, 0xa2, 0xa5, 0xa6, 0xaf, 0xb0, 0xb2, 0xb3, 0xb4, 0xbb, 0xc2, 0xc5, 0xc6, 0xcf, 0xd0, 0xd2, 0xd3, 0xd4, 0xe2, 0xee} {
		t[c] = false
	}
	return t
}()

// isValtype reports whether b is a one-byte value type of WebAssembly 2.0.
func isValtype(b byte) bool {
	switch b {
	case i32, i64, f32, f64, v128, 0x70, 0x6f:
		return true
	}
	return false
}

// site is a place in a function's code where charging code goes: the
// start of a metered block (block: charge cost, then check if check) and/or
// a run-time charge by a size operand (dyn) before the instruction at at.
type site struct {
	at    int
	cost  int64
	block bool
	check bool
	dyn   *dynCost
}

const opFunc = 0 // the function's own block in ctrl.op

// ctrl is an open block, loop, if or the function itself.
type ctrl struct {
	op       byte
	dead     bool // entered from dead code: all of it is dead
	targeted bool // a live branch targets its label
	elseSeen bool
	thenCur  int // an if's then arm's last metered block at else (-1: dead)
	// A loop's header block, the block it is entered from, whether a
	// br_if or br_table targets it, and where its back edges start in
	// fnMeter.backs.
	header, entry int
	condBack      bool
	backStart     int
}

// backEdge is a live br to a loop: the loop's index in fnMeter.ctrls and
// the metered block the br ends.
type backEdge struct {
	loop, site int
}

// fnMeter instruments function bodies; its buffers are reused.
type fnMeter struct {
	m       *module
	counter []byte // the counter's global index, LEB128
	sites   []site
	ctrls   []ctrl
	backs   []backEdge
	buf     []byte
}

func (f *fnMeter) newSite(at int, check bool) int {
	f.sites = append(f.sites, site{at: at, block: true, check: check})
	return len(f.sites) - 1
}

func (f *fnMeter) addDyn(at int, d *dynCost) {
	if n := len(f.sites); n > 0 && f.sites[n-1].at == at {
		f.sites[n-1].dyn = d
		return
	}
	f.sites = append(f.sites, site{at: at, dyn: d})
}

// label marks the target of a branch of depth l from the live block cur
// (-1: dead code), unconditional or not.
func (f *fnMeter) label(l uint32, cur int, unconditional bool) error {
	if uint64(l) >= uint64(len(f.ctrls)) {
		return fmt.Errorf("branch depth %d out of range", l)
	}
	if cur >= 0 {
		i := len(f.ctrls) - 1 - int(l)
		c := &f.ctrls[i]
		c.targeted = true
		if c.op == 0x03 {
			if unconditional {
				f.backs = append(f.backs, backEdge{i, cur})
			} else {
				c.condBack = true
			}
		}
	}
	return nil
}

// endLoop moves the cost of loop c's header block, when that is exact, to
// the blocks that enter it: the block before the loop, and each block
// that ends with a br back to it. Each of those always continues into the
// header (unless the run stops inside it), so the count is unchanged, and
// a loop iteration pays one charge less. The budget check moves with the
// cost to the back edges: every cycle through the header still passes a
// check. Not when a br_if or br_table jumps back (the header is then
// entered from a block that may go elsewhere), nor when the header block
// jumps back to itself. A loop nothing jumps back to is no cycle: its
// header needs no check.
func (f *fnMeter) endLoop(c ctrl, idx int, st *Stats) {
	own := f.backs[c.backStart:]
	kept := c.backStart
	var mine []int
	for _, b := range own {
		if b.loop == idx {
			mine = append(mine, b.site)
		} else { // an enclosing loop's
			f.backs[kept] = b
			kept++
		}
	}
	f.backs = f.backs[:kept]
	h := &f.sites[c.header]
	switch {
	case c.condBack:
		return
	case len(mine) == 0:
		h.check = false
		return
	}
	for _, b := range mine {
		if b == c.header {
			return
		}
	}
	cost := h.cost
	h.cost, h.check = 0, false
	f.sites[c.entry].cost += cost
	for _, b := range mine {
		f.sites[b].cost += cost
		f.sites[b].check = true
	}
	st.LoopsMerged++
}

// instrument appends to out the code section entry (size and body) of
// body instrumented. params is the function's number of parameters.
func (f *fnMeter) instrument(out, body []byte, params int, st *Stats) ([]byte, error) {
	r := reader{b: body}
	nDecl := r.count("local declarations", 2)
	declStart := len(body) - len(r.b)
	locals := uint64(params)
	for range nDecl {
		locals += uint64(r.u32("local count"))
		r.valtype()
		if locals > maxLocals {
			return nil, fmt.Errorf("more than %d locals", maxLocals)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	decls := body[declStart : len(body)-len(r.b)]
	code := r.b
	if err := f.scan(code, locals, st); err != nil {
		return nil, err
	}

	// Scratch locals: t (i64) holds a charged counter for its check; s
	// (i32) a size operand; then savers for values above a size operand.
	var need [4]uint32 // i32, i64, f32, f64
	sized := false
	for _, s := range f.sites {
		if s.dyn == nil {
			continue
		}
		sized = true
		var n [4]uint32
		for _, t := range s.dyn.above {
			n[typeSlot(t)]++
		}
		for i := range need {
			need[i] = max(need[i], n[i])
		}
	}
	t := uint32(locals)
	s := t + 1
	var saver [4]uint32
	saver[0] = s + 1
	saver[1] = saver[0] + need[0]
	saver[2] = saver[1] + need[1]
	saver[3] = saver[2] + need[2]

	b := f.buf[:0]
	extra := uint64(1)
	if sized {
		extra++
		for _, n := range need[1:] {
			if n > 0 {
				extra++
			}
		}
	}
	b = binary.AppendUvarint(b, uint64(nDecl)+extra)
	b = append(b, decls...)
	b = append(b, 1, i64)
	if sized {
		b = binary.AppendUvarint(b, 1+uint64(need[0]))
		b = append(b, i32)
		for i, typ := range []byte{i64, f32, f64} {
			if n := need[i+1]; n > 0 {
				b = binary.AppendUvarint(b, uint64(n))
				b = append(b, typ)
			}
		}
	}
	last := 0
	g := f.counter
	for _, st2 := range f.sites {
		b = append(b, code[last:st2.at]...)
		last = st2.at
		if st2.block && (st2.cost > 0 || st2.check) {
			st.Charges++
			switch {
			case st2.cost == 0: // check only
				b = append(append(b, 0x23), g...)
				b = append(b, 0x42, 0x00, 0x53, 0x04, 0x40, 0x00, 0x0b)
			default:
				b = append(append(b, 0x23), g...)
				b = appendSleb(append(b, 0x42), st2.cost)
				b = append(b, 0x7d) // i64.sub
				if st2.check {
					b = appendCheck(b, g, t)
				} else {
					b = append(append(b, 0x24), g...) // global.set
				}
			}
			if st2.check {
				st.Checks++
			}
		}
		if d := st2.dyn; d != nil {
			st.Sized++
			var k [4]uint32
			idx := make([]uint32, len(d.above))
			for i, typ := range d.above {
				slot := typeSlot(typ)
				idx[i] = saver[slot] + k[slot]
				k[slot]++
			}
			for i := len(idx) - 1; i >= 0; i-- {
				b = binary.AppendUvarint(append(b, 0x21), uint64(idx[i])) // local.set
			}
			b = binary.AppendUvarint(append(b, 0x22), uint64(s)) // local.tee s
			b = append(append(b, 0x23), g...)
			b = binary.AppendUvarint(append(b, 0x20), uint64(s))
			b = append(b, 0xad) // i64.extend_i32_u
			switch {
			case d.shift > 0:
				b = append(b, 0x42, byte(d.shift), 0x86) // i64.shl
			case d.shift < 0:
				b = append(b, 0x42, byte(-d.shift), 0x88) // i64.shr_u
			}
			b = append(b, 0x7d) // i64.sub
			b = appendCheck(b, g, t)
			for _, i := range idx {
				b = binary.AppendUvarint(append(b, 0x20), uint64(i)) // local.get
			}
		}
	}
	b = append(b, code[last:]...)
	f.buf = b
	out = binary.AppendUvarint(out, uint64(len(b)))
	return append(out, b...), nil
}

// appendCheck appends, with the charged counter on the stack: store it,
// and trap if it is negative.
func appendCheck(b, g []byte, t uint32) []byte {
	b = binary.AppendUvarint(append(b, 0x22), uint64(t)) // local.tee t
	b = append(append(b, 0x24), g...)                    // global.set
	b = binary.AppendUvarint(append(b, 0x20), uint64(t)) // local.get t
	return append(b, 0x42, 0x00, 0x53, 0x04, 0x40, 0x00, 0x0b)
}

func typeSlot(t byte) int {
	switch t {
	case i64:
		return 1
	case f32:
		return 2
	case f64:
		return 3
	}
	return 0
}

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

// scan decodes code (a function's instructions) and records in f.sites
// where charges go. locals is the function's number of locals.
func (f *fnMeter) scan(code []byte, locals uint64, st *Stats) error {
	f.sites = f.sites[:0]
	f.backs = f.backs[:0]
	f.ctrls = append(f.ctrls[:0], ctrl{op: opFunc, thenCur: -1, header: -1, entry: -1})
	cur := f.newSite(0, true) // function entry: charge and check
	m := f.m
	p := 0
	bad := func(at int, what string) error {
		return fmt.Errorf("%s at offset %d", what, at)
	}
	u32 := func() (uint32, bool) {
		v, n := uleb32(code[p:])
		if n <= 0 {
			return 0, false
		}
		p += n
		return v, true
	}
	for {
		if p >= len(code) {
			return fmt.Errorf("function body ends inside a block")
		}
		at := p
		op := code[p]
		p++
		info := ops[op]
		live := cur >= 0
		if perInstruction && live {
			cur = f.newSite(at, false)
		}
		if live {
			f.sites[cur].cost += int64(info.cost)
		}
		switch info.kind {
		case kInvalid:
			return bad(at, fmt.Sprintf("unknown or unsupported instruction 0x%02x", op))
		case kPlain:
		case kBlock, kLoop, kIf:
			n := blockType(code[p:], len(m.types))
			if n == 0 {
				return bad(at, "bad block type")
			}
			p += n
			c := ctrl{op: op, dead: !live, thenCur: -1, header: -1, entry: cur, backStart: len(f.backs)}
			if live && info.kind != kBlock {
				cur = f.newSite(p, info.kind == kLoop)
				c.header = cur
			}
			f.ctrls = append(f.ctrls, c)
		case kElse:
			c := &f.ctrls[len(f.ctrls)-1]
			if c.op != 0x04 || c.elseSeen {
				return bad(at, "else outside an if")
			}
			c.elseSeen, c.thenCur = true, cur
			cur = -1
			if !c.dead {
				cur = f.newSite(p, false)
			}
		case kEnd:
			c := f.ctrls[len(f.ctrls)-1]
			f.ctrls = f.ctrls[:len(f.ctrls)-1]
			if len(f.ctrls) == 0 { // the function's end
				if p != len(code) {
					return bad(p, "bytes after the function's end")
				}
				return nil
			}
			if c.dead {
				cur = -1
				break
			}
			if c.op == 0x03 && mergeLoopHeaders {
				f.endLoop(c, len(f.ctrls), st)
			}
			// The paths that reach the code after end: falling through
			// (from cur, and from the then arm of an if with else), the
			// false edge of an if without else, and branches to a block
			// or if. One fall-through path alone continues its block.
			paths, only := 0, -1
			if cur >= 0 {
				paths, only = 1, cur
			}
			if c.op == 0x04 {
				if !c.elseSeen {
					paths += 2
				} else if c.thenCur >= 0 {
					paths, only = paths+1, c.thenCur
				}
			}
			if c.targeted && c.op != 0x03 {
				paths += 2
			}
			switch {
			case paths == 0:
				cur = -1
			case paths == 1:
				cur = only
			default:
				cur = f.newSite(p, false)
			}
		case kBr, kBrIf:
			l, ok := u32()
			if !ok {
				return bad(at, "bad label")
			}
			if err := f.label(l, cur, info.kind == kBr); err != nil {
				return bad(at, err.Error())
			}
			switch {
			case info.kind == kBr:
				cur = -1
			case live:
				cur = f.newSite(p, false)
			}
		case kBrTable:
			n, ok := u32()
			if !ok || uint64(n) > uint64(len(code)-p) {
				return bad(at, "bad br_table")
			}
			for range uint64(n) + 1 {
				l, ok := u32()
				if !ok {
					return bad(at, "bad label")
				}
				if err := f.label(l, cur, false); err != nil {
					return bad(at, err.Error())
				}
			}
			cur = -1
		case kStop:
			cur = -1
		case kCall:
			fn, ok := u32()
			if !ok {
				return bad(at, "bad function index")
			}
			if uint64(fn) < uint64(len(m.importFuncs)) && live {
				im := m.importFuncs[fn]
				f.sites[cur].cost += CostHostCall - CostCall
				if im.dyn != nil {
					f.addDyn(at, im.dyn)
				}
			}
		case kCallIndirect:
			_, ok1 := u32()
			_, ok2 := u32()
			if !ok1 || !ok2 {
				return bad(at, "bad call_indirect")
			}
		case kSelectT:
			if p+2 > len(code) || code[p] != 1 || !isValtype(code[p+1]) {
				return bad(at, "bad select type")
			}
			p += 2
		case kLocal:
			i, ok := u32()
			if !ok || uint64(i) >= locals {
				return bad(at, "local index out of range")
			}
		case kGlobal:
			g, ok := u32()
			if !ok || g >= m.globals {
				return bad(at, "global index out of range")
			}
		case kU32:
			if _, ok := u32(); !ok {
				return bad(at, "bad index")
			}
		case kMem:
			_, ok1 := u32()
			_, ok2 := u32()
			if !ok1 || !ok2 {
				return bad(at, "bad memory argument")
			}
		case kMemZero, kMemGrow:
			if p >= len(code) || code[p] != 0 {
				return bad(at, "bad memory index")
			}
			p++
			if info.kind == kMemGrow && live {
				f.addDyn(at, dynMemoryGrow)
			}
		case kI32Const, kI64Const:
			max := 5
			if info.kind == kI64Const {
				max = 10
			}
			n := slebLen(code[p:], max)
			if n == 0 {
				return bad(at, "bad integer constant")
			}
			p += n
		case kF32Const, kF64Const:
			n := 4
			if info.kind == kF64Const {
				n = 8
			}
			if len(code)-p < n {
				return bad(at, "bad float constant")
			}
			p += n
		case kRefNull:
			if p >= len(code) || code[p] != 0x70 && code[p] != 0x6f {
				return bad(at, "bad reference type")
			}
			p++
		case kPrefixFC:
			sub, ok := u32()
			if !ok {
				return bad(at, "bad 0xfc opcode")
			}
			var d *dynCost
			switch {
			case sub <= 7: // saturating truncations
			case sub == 8: // memory.init data 0
				_, ok = u32()
				ok = ok && p < len(code) && code[p] == 0
				p++
				d = dynBulkMemory
			case sub == 9 || sub == 13 || sub == 16: // data.drop, elem.drop, table.size
				_, ok = u32()
			case sub == 10: // memory.copy 0 0
				ok = p+1 < len(code) && code[p] == 0 && code[p+1] == 0
				p += 2
				d = dynBulkMemory
			case sub == 11: // memory.fill 0
				ok = p < len(code) && code[p] == 0
				p++
				d = dynBulkMemory
			case sub == 12 || sub == 14: // table.init, table.copy
				_, ok1 := u32()
				_, ok2 := u32()
				ok = ok1 && ok2
				d = dynTable
			case sub == 15 || sub == 17: // table.grow, table.fill
				_, ok = u32()
				d = dynTable
			default:
				return bad(at, fmt.Sprintf("unknown or unsupported instruction 0xfc %d", sub))
			}
			if !ok {
				return bad(at, fmt.Sprintf("bad immediate of instruction 0xfc %d", sub))
			}
			if d != nil && live {
				f.sites[cur].cost += CostBulk - CostInstruction
				f.addDyn(at, d)
			}
		case kPrefixFD:
			// wazero reads the opcode as one byte; an opcode of 128 to 255
			// is two bytes in LEB128, the second 0x01 (a nop to wazero).
			// Only those encodings are taken, so that both read the same.
			if p >= len(code) {
				return bad(at, "bad 0xfd opcode")
			}
			sub := code[p]
			p++
			if sub >= 0x80 {
				if p >= len(code) || code[p] != 0x01 {
					return bad(at, "bad 0xfd opcode")
				}
				p++
			}
			if !simdValid[sub] {
				return bad(at, fmt.Sprintf("unknown instruction 0xfd %d", sub))
			}
			ok := true
			switch {
			case sub <= 11 || sub == 92 || sub == 93: // loads, stores: memarg
				_, ok1 := u32()
				_, ok2 := u32()
				ok = ok1 && ok2
			case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
				ok = len(code)-p >= 16
				p += 16
			case sub >= 21 && sub <= 34: // lane extract and replace
				ok = p < len(code)
				p++
			case sub >= 84 && sub <= 91: // lane loads and stores: memarg, lane
				_, ok1 := u32()
				_, ok2 := u32()
				ok = ok1 && ok2 && p < len(code)
				p++
			}
			if !ok {
				return bad(at, fmt.Sprintf("bad immediate of instruction 0xfd %d", sub))
			}
		}
	}
}

// blockType returns the length of the block type at the start of b, or 0
// if it is not one of WebAssembly 2.0: empty, a value type, or the index
// of one of types function types (a non-negative s33).
func blockType(b []byte, types int) int {
	if len(b) == 0 {
		return 0
	}
	if b[0] == 0x40 || isValtype(b[0]) {
		return 1
	}
	var v uint64
	for i := 0; i < 5 && i < len(b); i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			if b[i]&0x40 != 0 || v >= uint64(types) { // negative, or no such type
				return 0
			}
			return i + 1
		}
	}
	return 0
}
