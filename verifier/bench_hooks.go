package verifier

import (
	"context"
	"fmt"

	"github.com/aspen-market/aspen/protocol"
)

// RegisterLocal hands a sealed Register envelope to the registration
// handler as if it had arrived on a stream from its signer: the same
// checks, state, persistence and benchmark scheduling. It exists for the
// benchmark suite (cmd/aspen-bench), which registers thousands of
// synthetic workers without a libp2p host for each.
func (v *Verifier) RegisterLocal(ctx context.Context, sealed []byte) error {
	env, err := protocol.Open(sealed)
	if err != nil {
		return err
	}
	msg, err := v.handleRegister(ctx, env.Signer, env)
	if err != nil {
		return err
	}
	if ack, ok := msg.(*protocol.Ack); ok && !ack.OK {
		return fmt.Errorf("verifier: registration refused: %s", ack.Error)
	}
	return nil
}
