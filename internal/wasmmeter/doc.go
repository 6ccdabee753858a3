// Package wasmmeter rewrites a WebAssembly module so that running it counts
// its own work: a deterministic, weighted count of the WebAssembly
// operations it executes, the same on every machine and every run. Aspen
// bills, rates and limits jobs by this count ("standard work units").
//
// # How the count is kept
//
// [Instrument] appends one mutable i64 global to the module (after every
// existing global, so no index the module uses changes) and exports it as
// [CounterExport]. The host sets it to the job's budget before the guest
// runs and reads it afterwards: it holds the budget not yet spent, so the
// work done is the budget minus the final value. The module's own code
// cannot name the global: an instruction, initializer or export that uses a
// global index at or past the module's own globals is refused, and so is a
// local index past the function's own locals (the pass adds scratch
// locals).
//
// Every function body is split into metered blocks: straight runs of
// instructions that, unless the run stops inside (a trap, an exit), execute
// all or not at all. A block starts at the function's entry, at a loop's
// header, at the start of an if's then and else arms, after a br_if, and
// after the end of a block, if or loop that more than one path reaches (a
// branch to it, an if without else, or both arms of an if). Entering a
// block or a block's end that only falling through reaches continues the
// block before it. Code after an unconditional branch (br, br_table,
// return, unreachable) up to the end of its enclosing block is dead and is
// not charged. At the start of each block the pass inserts code that
// subtracts the block's total cost from the counter. At function entries
// and loop headers (every cycle of control flow passes through one, and
// every cycle costs at least one tick) it then checks the counter and
// executes unreachable if it is negative: a run that overspends its budget
// stops there, at the same instruction on every machine. Between checks
// the guest runs only forward code of bounded length, so it can overspend
// by at most that much; the host treats a final counter below zero as
// "work limit" however the run ended.
//
// One refinement saves a charge per loop iteration: when every jump back
// to a loop is an unconditional br (as in the block dispatcher Go's
// compiler writes around every function with a loop), the loop header's
// block costs nothing itself; its cost is added to the block before the
// loop and to each block that ends with such a br, since each always
// continues into the header, and the check moves with it to those blocks
// (every cycle still passes one).
//
// The count is exact: a run that completes is charged exactly the cost of
// the instructions it executed, identically on every machine. Charges are
// made ahead, at block starts, so a run that stops inside a block (a trap,
// proc_exit, a host refusal, the work limit) has been charged for the rest
// of that block too, and, if that block ends by jumping back to its loop,
// for the loop header's block: deterministic as well.
//
// # Cost table
//
// The counter counts ticks; [TicksPerUnit] ticks make one standard work
// unit, and a machine of speed 1.0 performs 1e9 units per second. The
// weights approximate what each operation costs wazero's compiled code on
// the machine they were measured on (where typical Go-built kernels run
// 9 to 19 ticks per nanosecond). Structural markers (block, loop, else,
// end, nop) cost [CostFree]; every other instruction costs
// [CostInstruction] (1 tick), except:
//
//	call                                  CostCall (8)
//	call_indirect                         CostCallIndirect (16)
//	call of an imported (host) function   CostHostCall (512), plus its size below
//	i32/i64 div_s, div_u, rem_s, rem_u    CostIntDivision (8)
//	f32/f64 div, sqrt                     CostFloatDivision (4)
//	memory.grow                           CostHostCall + CostPerPage (65,536) per page requested
//	memory.fill, memory.copy, memory.init CostBulk (256) + CostPerByte (1) per byte
//	table.grow, .fill, .copy, .init       CostBulk + CostPerElement (8) per element
//	WASI random_get                       CostHostCall + CostPerRandomByte (16) per byte
//	WASI fd_read, fd_write, fd_pread,
//	fd_pwrite, sock_recv, sock_send       CostHostCall + CostPerIOVec (64) per iovec
//	WASI poll_oneoff                      CostHostCall + CostPerIOVec per subscription
//
// The sized parts are computed at run time from the size operand (the top
// of the stack for memory and table operations, the named parameter for
// host calls) and checked at once, before the operation runs, so an
// operation the budget cannot pay for never starts. Host calls are charged
// by size because their host-side work grows with that argument while the
// call itself is one instruction.
//
// # Start functions
//
// A start section would run guest code while the module is instantiated,
// before the host can set the budget. The pass removes it and exports the
// start function as [StartExport]; the host calls that export first, then
// _start, which is what instantiation would have done.
//
// Custom sections (names, debug information) are dropped.
//
// # What is refused
//
// Anything the pass cannot decode exactly as wazero does is refused with
// an error wrapping [ErrMalformed], never passed through: unknown or
// over-long opcodes, instructions of proposals the sandbox does not enable
// (threads, exceptions, tail calls, typed function references), malformed
// immediates, unbalanced blocks, bytes after a function's final end, a
// module that already exports [CounterExport] or [StartExport], and a
// start function that takes or returns values. A module this pass accepts
// may still be refused by wazero's validation (types are not checked
// here); the inserted code is valid wherever the original code was.
package wasmmeter
