package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestYAMLKeepsJSONNamesAndIntegers(t *testing.T) {
	type v struct {
		Balance int64   `json:"balance_micros"`
		Rate    float64 `json:"rate"`
		Name    string  `json:"name"`
	}
	b, err := YAML(v{Balance: 12_500_000, Rate: 0.5, Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "balance_micros: 12500000\nname: x\nrate: 0.5\n"; got != want {
		t.Errorf("YAML = %q, want %q", got, want)
	}
}

func TestRunExitStatuses(t *testing.T) {
	newTree := func() *cobra.Command {
		root := Root(&cobra.Command{Use: "tool"})
		root.AddCommand(&cobra.Command{Use: "fail", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return errFail }},
			&cobra.Command{Use: "code", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return Exit(7) }},
			&cobra.Command{Use: "ok", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return Exit(0) }})
		return root
	}
	for args, want := range map[string]struct {
		code int
		msg  string
	}{
		"fail":       {1, "tool fail: it broke\n"},
		"code":       {7, ""},
		"ok":         {0, ""},
		"ok -h":      {0, ""},
		"ok extra":   {2, "tool ok: unexpected argument \"extra\" (this command takes none)\nRun 'tool ok --help' for usage.\n"},
		"ok --nope":  {2, "tool ok: unknown flag: --nope\nRun 'tool ok --help' for usage.\n"},
		"of":         {2, "did you mean ok?"},
		"help fail":  {0, ""},
		"help xyzzy": {2, "tool help: unknown help topic \"xyzzy\"\nRun 'tool --help' for usage.\n"},
		"":           {2, "tool: missing command\nRun 'tool --help' for usage.\n"},
		"version -o": {2, "flag needs an argument"},
	} {
		var out, errb bytes.Buffer
		code := Run(newTree(), strings.Fields(args), nil, &out, &errb)
		if code != want.code || !strings.Contains(errb.String(), want.msg) {
			t.Errorf("tool %s: exit %d, stderr %q; want %d and %q", args, code, errb.String(), want.code, want.msg)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

const errFail = errString("it broke")
