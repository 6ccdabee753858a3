package browser

import (
	"os"
	"testing"

	"github.com/aspen-market/aspen/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.RunChildIfRequested() // the test binary is also the sandbox's executor child
	os.Exit(m.Run())
}
