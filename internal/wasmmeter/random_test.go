package wasmmeter

import (
	"testing"

	"pgregory.net/rapid"

	w "github.com/aspen-market/aspen/internal/wasmasm"
)

// progGen writes random structured code: nested blocks, ifs with and
// without else, loops, br, br_if and br_table to any enclosing label,
// returns, calls, memory.fill and dead code after unconditional branches.
// Local 0 is fuel that every loop header spends, so every program ends;
// local 1 steers the branches.
type progGen struct {
	t      *rapid.T
	c      *w.Code
	budget int // statements left
}

func (g *progGen) stmts(labels int) {
	n := rapid.IntRange(0, 4).Draw(g.t, "n")
	for range n {
		if g.budget <= 0 {
			return
		}
		g.budget--
		g.stmt(labels)
	}
}

// cond pushes a condition that varies as local 1 does.
func (g *progGen) cond() {
	g.c.LocalGet(1).I32Const(rapid.Int32Range(1, 7).Draw(g.t, "mask")).Op(0x71) // i32.and
}

func (g *progGen) stmt(labels int) {
	c := g.c
	switch rapid.IntRange(0, 10).Draw(g.t, "stmt") {
	case 0, 1: // straight code that changes local 1
		c.LocalGet(1).I32Const(rapid.Int32Range(1, 100).Draw(g.t, "k")).Op(w.OpI32Add).LocalSet(1)
	case 2:
		c.Block()
		g.stmts(labels + 1)
		c.End()
	case 3:
		g.cond()
		c.If()
		g.stmts(labels + 1)
		if rapid.Bool().Draw(g.t, "else") {
			c.Else()
			g.stmts(labels + 1)
		}
		c.End()
	case 4: // a loop that spends fuel at its header
		c.Block().Loop()
		c.LocalGet(0).Op(w.OpI32Eqz).BrIf(1)
		c.LocalGet(0).I32Const(1).Op(w.OpI32Sub).LocalSet(0)
		g.stmts(labels + 2)
		if rapid.Bool().Draw(g.t, "uncond") {
			c.Br(0)
		} else {
			g.cond()
			c.BrIf(0)
		}
		c.End().End()
	case 5:
		g.cond()
		c.BrIf(uint32(rapid.IntRange(0, labels).Draw(g.t, "depth")))
	case 6:
		c.Br(uint32(rapid.IntRange(0, labels).Draw(g.t, "depth")))
	case 7:
		n := rapid.IntRange(0, 3).Draw(g.t, "targets")
		c.LocalGet(1).Op(0x0e).Op(w.Uleb(uint64(n))...)
		for range n + 1 {
			c.Op(w.Uleb(uint64(rapid.IntRange(0, labels).Draw(g.t, "depth")))...)
		}
	case 8:
		c.Call(1)
	case 9:
		c.I32Const(0).I32Const(7).I32Const(rapid.Int32Range(0, 300).Draw(g.t, "bytes")).Op(w.OpPrefixFC, 11, 0)
	case 10:
		if rapid.IntRange(0, 3).Draw(g.t, "return") == 0 {
			c.Op(w.OpReturn)
		}
	}
}

// TestRandomPrograms: on random structured programs, the metered blocks
// (with loop headers merged or not) charge exactly what charging every
// instruction on its own does, and the budget stops them exactly there.
func TestRandomPrograms(t *testing.T) {
	rt := newRuntime(t)
	rapid.Check(t, func(rt2 *rapid.T) {
		g := &progGen{t: rt2, c: w.NewCode(), budget: 40}
		g.c.I32Const(rapid.Int32Range(0, 40).Draw(rt2, "fuel")).LocalSet(0)
		g.c.I32Const(rapid.Int32Range(0, 1000).Draw(rt2, "seed")).LocalSet(1)
		g.stmts(0)
		helper := w.NewCode().I32Const(1).I32Const(2).Op(w.OpI32Add).Op(w.OpDrop)
		bin := w.Module{
			Types:   []w.FuncType{tVoid},
			Funcs:   []uint32{0, 0},
			Memory:  w.Limits(1),
			Exports: []w.Export{w.FuncExport("_start", 0)},
			Codes:   [][]byte{g.c.Body(w.Local{Count: 2, Type: w.I32}), helper.Body()},
		}.Bytes()
		var spent []int64
		for _, mode := range []struct{ perInstr, merge bool }{{true, false}, {false, false}, {false, true}} {
			perInstruction, mergeLoopHeaders = mode.perInstr, mode.merge
			met, _, err := Instrument(bin)
			perInstruction, mergeLoopHeaders = false, true
			if err != nil {
				rt2.Fatalf("Instrument: %v", err)
			}
			o := runInstrumented(t, rt, met, 1<<40, "")
			if o.err != nil {
				rt2.Fatalf("mode %+v: %v", mode, o.err)
			}
			spent = append(spent, o.spent)
			if mode.perInstr {
				continue
			}
			if o := runInstrumented(t, rt, met, o.spent, ""); o.err != nil || o.spent != spent[0] {
				rt2.Fatalf("mode %+v, budget %d: spent %d, %v", mode, spent[0], o.spent, o.err)
			}
			if spent[0] > 0 {
				if o := runInstrumented(t, rt, met, spent[0]-1, ""); o.spent < spent[0] {
					rt2.Fatalf("mode %+v, budget %d: spent %d, %v", mode, spent[0]-1, o.spent, o.err)
				}
			}
		}
		if spent[1] != spent[0] || spent[2] != spent[0] {
			rt2.Fatalf("charged %d per instruction, %d by blocks, %d with loop headers merged", spent[0], spent[1], spent[2])
		}
	})
}
