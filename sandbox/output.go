package sandbox

import "github.com/aspen-market/aspen/protocol"

// Output maps a result to the job output whose canonical encoding is the
// result blob (protocol.EncodeOutput): its CID is what replicas are compared
// on. Workers and the verifier must build it the same way, byte for byte,
// so it lives here, next to the result it comes from.
func (r Result) Output() protocol.Output {
	msg := r.Message
	if len(msg) > protocol.MaxTextLen {
		msg = msg[:protocol.MaxTextLen]
	}
	o := protocol.Output{ExitCode: r.ExitCode, Stdout: r.Stdout, Stderr: r.Stderr, Message: msg}
	switch r.Status {
	case StatusOK:
		o.Status = protocol.StatusOK
	case StatusExit:
		o.Status = protocol.StatusExit
	case StatusTrap:
		o.Status = protocol.StatusTrap
	case StatusTimeout:
		o.Status = protocol.StatusTimeout
	case StatusMemoryLimit:
		o.Status = protocol.StatusMemoryLimit
	case StatusOutputLimit:
		o.Status = protocol.StatusOutputLimit
	case StatusInvalidModule:
		o.Status = protocol.StatusInvalidModule
	case StatusMissingImport:
		o.Status = protocol.StatusMissingImport
	case StatusWorkLimit:
		o.Status = protocol.StatusWorkLimit
	default:
		o.Status = protocol.StatusTrap
	}
	if len(o.Stderr) > protocol.MaxStderr {
		o.Stderr = o.Stderr[:protocol.MaxStderr]
	}
	return o
}
