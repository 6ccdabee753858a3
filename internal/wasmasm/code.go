package wasmasm

// Opcodes of the instructions the builder writes, and a few more for
// [Code.Op].
const (
	OpUnreachable byte = 0x00
	OpNop         byte = 0x01
	OpBlock       byte = 0x02
	OpLoop        byte = 0x03
	OpIf          byte = 0x04
	OpElse        byte = 0x05
	OpEnd         byte = 0x0b
	OpBr          byte = 0x0c
	OpBrIf        byte = 0x0d
	OpReturn      byte = 0x0f
	OpCall        byte = 0x10
	OpDrop        byte = 0x1a
	OpLocalGet    byte = 0x20
	OpLocalSet    byte = 0x21
	OpLocalTee    byte = 0x22
	OpGlobalGet   byte = 0x23
	OpGlobalSet   byte = 0x24
	OpI32Load     byte = 0x28
	OpI32Load8U   byte = 0x2d
	OpI32Store    byte = 0x36
	OpMemorySize  byte = 0x3f
	OpMemoryGrow  byte = 0x40
	OpI32Const    byte = 0x41
	OpI64Const    byte = 0x42
	OpI32Eqz      byte = 0x45
	OpI32Eq       byte = 0x46
	OpI32Ne       byte = 0x47
	OpI32LtU      byte = 0x49
	OpI32GtU      byte = 0x4b
	OpI32GeU      byte = 0x4f
	OpI32Add      byte = 0x6a
	OpI32Sub      byte = 0x6b
	OpI32Mul      byte = 0x6c
	OpI32DivS     byte = 0x6d
	OpRefNull     byte = 0xd0
	OpPrefixFC    byte = 0xfc // table.grow is OpPrefixFC, 15, table index

	// BlockVoid is the block type of a block, loop or if that takes and
	// leaves nothing on the stack.
	BlockVoid byte = 0x40
)

// Code accumulates the instructions of a function body. Each method
// appends one instruction and returns c, so they chain:
//
//	var c wasmasm.Code
//	c.LocalGet(0).I32Const(1).Op(wasmasm.OpI32Add)
//	body := c.Body(wasmasm.Local{Count: 1, Type: wasmasm.I32})
type Code []byte

// NewCode returns a builder that starts with raw, as encoded instructions.
func NewCode(raw ...byte) *Code {
	c := Code(append([]byte(nil), raw...))
	return &c
}

// Op appends raw bytes: an opcode without immediates (OpDrop, OpI32Add,
// ...), or one with them encoded by hand.
func (c *Code) Op(raw ...byte) *Code { *c = append(*c, raw...); return c }

func (c *Code) opU(op byte, v uint32) *Code {
	*c = AppendUleb(append(*c, op), uint64(v))
	return c
}

// I32Const appends i32.const v.
func (c *Code) I32Const(v int32) *Code {
	*c = AppendSleb(append(*c, OpI32Const), int64(v))
	return c
}

// I64Const appends i64.const v.
func (c *Code) I64Const(v int64) *Code {
	*c = AppendSleb(append(*c, OpI64Const), v)
	return c
}

// GlobalGet appends global.get i (imported globals count first).
func (c *Code) GlobalGet(i uint32) *Code { return c.opU(OpGlobalGet, i) }

// GlobalSet appends global.set i.
func (c *Code) GlobalSet(i uint32) *Code { return c.opU(OpGlobalSet, i) }

// LocalGet appends local.get i (parameters are the first locals).
func (c *Code) LocalGet(i uint32) *Code { return c.opU(OpLocalGet, i) }

// LocalSet appends local.set i.
func (c *Code) LocalSet(i uint32) *Code { return c.opU(OpLocalSet, i) }

// LocalTee appends local.tee i.
func (c *Code) LocalTee(i uint32) *Code { return c.opU(OpLocalTee, i) }

// Call appends call f (imported functions count first).
func (c *Code) Call(f uint32) *Code { return c.opU(OpCall, f) }

// Block appends block with no result; close it with End.
func (c *Code) Block() *Code { return c.Op(OpBlock, BlockVoid) }

// Loop appends loop with no result; close it with End.
func (c *Code) Loop() *Code { return c.Op(OpLoop, BlockVoid) }

// If appends if with no result; close it with End.
func (c *Code) If() *Code { return c.Op(OpIf, BlockVoid) }

// Else appends else, between the arms of an if.
func (c *Code) Else() *Code { return c.Op(OpElse) }

// End appends end, closing a block, loop or if.
func (c *Code) End() *Code { return c.Op(OpEnd) }

// Br appends br depth: to the end of a block, the start of a loop.
func (c *Code) Br(depth uint32) *Code { return c.opU(OpBr, depth) }

// BrIf appends br_if depth.
func (c *Code) BrIf(depth uint32) *Code { return c.opU(OpBrIf, depth) }

// memarg appends a memory instruction with alignment 2^align and offset.
func (c *Code) memarg(op, align byte, offset uint32) *Code {
	*c = AppendUleb(append(*c, op, align), uint64(offset))
	return c
}

// I32Load appends i32.load at offset, aligned to 4 bytes.
func (c *Code) I32Load(offset uint32) *Code { return c.memarg(OpI32Load, 2, offset) }

// I32Load8U appends i32.load8_u at offset.
func (c *Code) I32Load8U(offset uint32) *Code { return c.memarg(OpI32Load8U, 0, offset) }

// I32Store appends i32.store at offset, aligned to 4 bytes.
func (c *Code) I32Store(offset uint32) *Code { return c.memarg(OpI32Store, 2, offset) }

// MemoryGrow appends memory.grow of memory 0: it pops a number of pages
// and pushes the old size in pages, or -1 when the memory cannot grow.
func (c *Code) MemoryGrow() *Code { return c.Op(OpMemoryGrow, 0) }

// Local declares Count locals of value type Type.
type Local struct {
	Count uint32
	Type  byte
}

// Body returns the function body for the code section: the declarations
// of its locals (after its parameters), the instructions of c, and the
// end that closes the function.
func (c *Code) Body(locals ...Local) []byte {
	b := Uleb(uint64(len(locals)))
	for _, l := range locals {
		b = append(AppendUleb(b, uint64(l.Count)), l.Type)
	}
	b = append(b, *c...)
	return append(b, OpEnd)
}
