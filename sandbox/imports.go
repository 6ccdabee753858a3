package sandbox

import (
	"encoding/binary"
	"errors"
)

// wasmImport is one entry of a module's import section.
type wasmImport struct {
	module, name string
	kind         byte // 0 function, 1 table, 2 memory, 3 global, 4 tag
}

var errImportSection = errors.New("malformed import section")

// importKinds names import kinds for messages.
var importKinds = [...]string{"a function", "a table", "a memory", "a global", "a tag"}

// moduleInfo is what the sandbox reads from a binary itself, because
// wazero's CompiledModule does not tell: imported tables and globals (to
// name them when refusing a module) and whether it has a start section
// (code that runs when the module is instantiated).
type moduleInfo struct {
	imports  []wasmImport
	hasStart bool
}

// inspect reads a wasm binary's section headers and its import section.
func inspect(bin []byte) (moduleInfo, error) {
	var info moduleInfo
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" {
		return info, errImportSection
	}
	r := wasmReader{b: bin[8:]}
	for len(r.b) > 0 {
		id := r.byte()
		size := r.u32()
		body := r.take(size)
		if r.err != nil {
			return info, r.err
		}
		switch id {
		case 2:
			var err error
			if info.imports, err = parseImports(body); err != nil {
				return info, err
			}
		case 8:
			info.hasStart = true
		}
	}
	return info, nil
}

// parseImports reads the body of an import section.
func parseImports(body []byte) ([]wasmImport, error) {
	{
		s := wasmReader{b: body}
		n := s.u32()
		var out []wasmImport
		for i := uint32(0); i < n && s.err == nil; i++ {
			im := wasmImport{module: s.name(), name: s.name(), kind: s.byte()}
			switch im.kind {
			case 0: // function: type index
				s.u32()
			case 1: // table: reftype, limits
				s.byte()
				s.limits()
			case 2: // memory: limits
				s.limits()
			case 3: // global: valtype, mutability
				s.byte()
				s.byte()
			case 4: // tag: attribute, type index
				s.byte()
				s.u32()
			default:
				return nil, errImportSection
			}
			out = append(out, im)
		}
		if s.err != nil {
			return nil, s.err
		}
		return out, nil
	}
}

type wasmReader struct {
	b   []byte
	err error
}

func (r *wasmReader) fail() {
	r.err = errImportSection
	r.b = nil
}

func (r *wasmReader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *wasmReader) u32() uint32 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || n > 5 || v > 1<<32-1 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return uint32(v)
}

func (r *wasmReader) take(n uint32) []byte {
	if r.err != nil || uint64(n) > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *wasmReader) name() string { return string(r.take(r.u32())) }

func (r *wasmReader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
}
