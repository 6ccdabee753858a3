package wasmasm

// Header is the magic number and version (1) that open every module.
const Header = "\x00asm\x01\x00\x00\x00"

// Value and reference types.
const (
	I32     byte = 0x7f
	I64     byte = 0x7e
	F32     byte = 0x7d
	F64     byte = 0x7c
	FuncRef byte = 0x70
)

// Kinds of import and export.
const (
	KindFunc   byte = 0
	KindTable  byte = 1
	KindMemory byte = 2
	KindGlobal byte = 3
)

// Section ids, in the order they appear in a module.
const (
	SecType     byte = 1
	SecImport   byte = 2
	SecFunction byte = 3
	SecTable    byte = 4
	SecMemory   byte = 5
	SecGlobal   byte = 6
	SecExport   byte = 7
	SecStart    byte = 8
	SecCode     byte = 10
	SecData     byte = 11
)

// FuncType is a function signature: value types (I32, I64, ...) taken and
// returned.
type FuncType struct {
	Params, Results []byte
}

// Import is one import. Desc is its description as encoded after the kind:
// a type index for a function (see [FuncImport]), a table type (see
// [Table]), limits for a memory (see [Limits]), a value type and
// mutability (0 or 1) for a global.
type Import struct {
	Module, Name string
	Kind         byte
	Desc         []byte
}

// FuncImport is the import of module.name, a function of type typeIdx.
func FuncImport(module, name string, typeIdx uint32) Import {
	return Import{Module: module, Name: name, Kind: KindFunc, Desc: Uleb(uint64(typeIdx))}
}

// Export is one export: of the function, table, memory or global (Kind)
// numbered Index.
type Export struct {
	Name  string
	Kind  byte
	Index uint32
}

// FuncExport exports function idx as name (imported functions count first).
func FuncExport(name string, idx uint32) Export {
	return Export{Name: name, Kind: KindFunc, Index: idx}
}

// MemoryExport exports memory idx as name.
func MemoryExport(name string, idx uint32) Export {
	return Export{Name: name, Kind: KindMemory, Index: idx}
}

// Global is a global of value type Type, mutable or not, whose initial
// value is the constant expression Init (its instructions, without the
// final end).
type Global struct {
	Type    byte
	Mutable bool
	Init    []byte
}

// GlobalExport exports global idx as name (imported globals count first).
func GlobalExport(name string, idx uint32) Export {
	return Export{Name: name, Kind: KindGlobal, Index: idx}
}

// Data is an active data segment: Bytes copied into memory 0 at Offset
// when the module is instantiated.
type Data struct {
	Offset uint32
	Bytes  []byte
}

// Module is a module to encode. Each field is one section; a nil or empty
// field leaves its section out.
type Module struct {
	Types   []FuncType
	Imports []Import
	Funcs   []uint32 // type index of each defined function
	Tables  [][]byte // table type of each defined table (see [Table])
	Memory  []byte   // limits of the one memory (see [Limits]); nil for none
	Globals []Global
	Exports []Export
	Start   *uint32  // index of the start function; nil for none
	Codes   [][]byte // body of each defined function (see [Code.Body])
	Data    []Data
}

// Command is a WASI command module: the function imports (of the given
// types, numbered from 0), one function of type () -> () running body,
// exported as _start, and a memory of pages pages, exported as "memory"
// and initialised with data.
func Command(types []FuncType, imports []Import, pages uint32, body []byte, data ...Data) []byte {
	all := append(append([]FuncType(nil), types...), FuncType{})
	return Module{
		Types:   all,
		Imports: imports,
		Funcs:   []uint32{uint32(len(all) - 1)},
		Memory:  Limits(pages),
		Exports: []Export{FuncExport("_start", uint32(len(imports))), MemoryExport("memory", 0)},
		Codes:   [][]byte{body},
		Data:    data,
	}.Bytes()
}

// Bytes encodes m: the header, then its sections in order.
func (m Module) Bytes() []byte {
	out := []byte(Header)
	vecSection := func(id byte, items [][]byte) {
		if len(items) > 0 {
			out = AppendSection(out, id, Vec(items...))
		}
	}
	vecSection(SecType, each(m.Types, func(f FuncType) []byte {
		b := append([]byte{0x60}, Vec1(f.Params)...)
		return append(b, Vec1(f.Results)...)
	}))
	vecSection(SecImport, each(m.Imports, func(im Import) []byte {
		b := append(Name(im.Module), Name(im.Name)...)
		return append(append(b, im.Kind), im.Desc...)
	}))
	vecSection(SecFunction, each(m.Funcs, func(t uint32) []byte { return Uleb(uint64(t)) }))
	vecSection(SecTable, m.Tables)
	if m.Memory != nil {
		vecSection(SecMemory, [][]byte{m.Memory})
	}
	vecSection(SecGlobal, each(m.Globals, func(g Global) []byte {
		mut := byte(0)
		if g.Mutable {
			mut = 1
		}
		return append(append([]byte{g.Type, mut}, g.Init...), OpEnd)
	}))
	vecSection(SecExport, each(m.Exports, func(e Export) []byte {
		return AppendUleb(append(Name(e.Name), e.Kind), uint64(e.Index))
	}))
	if m.Start != nil {
		out = AppendSection(out, SecStart, Uleb(uint64(*m.Start)))
	}
	vecSection(SecCode, each(m.Codes, func(body []byte) []byte {
		return append(Uleb(uint64(len(body))), body...)
	}))
	vecSection(SecData, each(m.Data, func(d Data) []byte {
		b := []byte{0, OpI32Const} // memory 0, offset i32.const d.Offset end
		b = append(AppendSleb(b, int64(d.Offset)), OpEnd)
		return append(b, Vec1(d.Bytes)...)
	}))
	return out
}

func each[T any](xs []T, f func(T) []byte) [][]byte {
	out := make([][]byte, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// Limits is the limits of a memory or table of min pages (or elements) and
// no maximum.
func Limits(min uint32) []byte { return AppendUleb([]byte{0}, uint64(min)) }

// LimitsMax is the limits of a memory or table of min to max pages (or
// elements).
func LimitsMax(min, max uint32) []byte {
	return AppendUleb(AppendUleb([]byte{1}, uint64(min)), uint64(max))
}

// Table is a table type: the reference type of its elements (FuncRef) and
// its limits.
func Table(elem byte, limits []byte) []byte { return append([]byte{elem}, limits...) }

// Vec is a vector of encoded items: their count, then the items.
func Vec(items ...[]byte) []byte {
	b := Uleb(uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

// Vec1 is a vector of one-byte items (value types, bytes): their count,
// then the bytes.
func Vec1(b []byte) []byte { return append(Uleb(uint64(len(b))), b...) }

// Name is a name: its length in bytes, then its UTF-8.
func Name(s string) []byte { return append(Uleb(uint64(len(s))), s...) }

// Section is a section: its id, the size of its body, then the body.
func Section(id byte, body []byte) []byte { return AppendSection(nil, id, body) }

// AppendSection appends [Section](id, body) to b.
func AppendSection(b []byte, id byte, body []byte) []byte {
	return append(AppendUleb(append(b, id), uint64(len(body))), body...)
}
