package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	a := New("tool")
	var got []string
	a.Register("hello", Command{Summary: "say hello", Run: func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
		if ctx.Err() != nil {
			t.Error("context already done")
		}
		in, _ := io.ReadAll(stdin)
		got = append(args, string(in))
		io.WriteString(stdout, "hi")
		return 3
	}})
	a.Register("x", Command{Summary: "other"})
	var out, errb bytes.Buffer
	if code := a.Run([]string{"hello", "-v", "a"}, strings.NewReader("in"), &out, &errb); code != 3 || out.String() != "hi" {
		t.Fatalf("code %d out %q", code, out.String())
	}
	if strings.Join(got, ",") != "-v,a,in" {
		t.Fatalf("args %v", got)
	}
	out.Reset()
	if code := a.Run([]string{"help"}, nil, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "  hello say hello\n") || !strings.Contains(out.String(), "  x     other\n") {
		t.Fatalf("help: %d %q", code, out.String())
	}
	errb.Reset()
	if code := a.Run([]string{"nope"}, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), `tool: unknown command "nope"`) {
		t.Fatalf("unknown: %d %q", code, errb.String())
	}
	if code := a.Run(nil, nil, &out, &errb); code != 2 {
		t.Fatalf("no command: %d", code)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate registration did not panic")
		}
	}()
	a.Register("x", Command{})
}
