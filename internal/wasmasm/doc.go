// Package wasmasm builds small WebAssembly binary modules by hand, for tests
// and benchmarks that need a module whose every instruction is known: a
// guest that loops forever, traps, imports what no host gives, or echoes
// its input at a negligible cost of its own.
//
// It owns three things:
//
//   - a module builder, [Module]: function types, imports, functions,
//     tables, one memory, globals, exports, a start function, code bodies and
//     active data segments, encoded by [Module.Bytes] in section order,
//     leaving out the sections it has nothing for;
//   - an instruction builder, [Code]: the few instructions such modules
//     use, each an append to a function body that [Code.Body] closes with
//     its locals and the final end;
//   - LEB128, the variable-length integers of the binary format: [Uleb]
//     and [Sleb] (and their Append forms) encode, [DecodeUleb] and
//     [DecodeSleb] decode.
//
// It checks nothing: a module it builds is exactly as valid as what it was
// given, which is the point for tests of how a host treats invalid or
// hostile modules. It is not a general assembler; add an instruction or a
// section here when a test needs one.
package wasmasm
