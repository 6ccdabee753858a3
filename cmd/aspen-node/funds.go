package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/protocol"
)

// taskEscrow is what the verifier holds for one task while it runs:
// replicas × the most one replica can cost (the work budget of timeout at
// max price on the slowest worker accepted: the min speed, at least the
// market's default lowest rated speed), as verifier/submit.go computes it.
func taskEscrow(maxPrice protocol.Micros, replicas int, timeout time.Duration, minSpeed protocol.Speed) protocol.Micros {
	if minSpeed == 0 {
		minSpeed = node.DefaultMinSpeed // what the node submits without one
	}
	per := market.ReplicaEscrow(maxPrice, timeout.Microseconds(), max(minSpeed, market.DefaultConfig().MinRatedSpeed))
	if replicas > 0 && int64(per) > (1<<63-1)/int64(replicas) {
		return 1<<63 - 1
	}
	return per * protocol.Micros(replicas)
}

// fundsWatch tells the user when tasks wait because the balance cannot
// cover their escrow. The verifier does not tell the consumer's node why a
// task waits; the node relays the verifier's signed statement, from which
// the CLI sees the balance and the escrow held: when the escrow held does
// not cover the unfinished tasks and the balance cannot cover one more,
// some of them wait for funds.
type fundsWatch struct {
	ctx      context.Context
	c        *client.Client
	st       *status
	perTask  protocol.Micros
	terms    string
	every    time.Duration
	last     time.Time
	waiting  bool // the last check found tasks waiting for funds
	disabled bool
}

const fundsCheckEvery = 10 * time.Second

func newFundsWatch(ctx context.Context, c *client.Client, st *status, maxPrice protocol.Micros, replicas int, timeout time.Duration, minSpeed protocol.Speed) *fundsWatch {
	return &fundsWatch{ctx: ctx, c: c, st: st, perTask: taskEscrow(maxPrice, replicas, timeout, minSpeed), every: fundsCheckEvery,
		terms: fmt.Sprintf("%d replicas × %s/h × %s", replicas, maxPrice, roundDur(timeout))}
}

// check runs after each progress report; it asks for the statement at most
// every fundsCheckEvery while tasks are unfinished.
func (f *fundsWatch) check(p client.Progress) {
	if f.disabled || p.Pending == 0 || f.st.quiet {
		return
	}
	now := f.st.now()
	if !f.last.IsZero() && now.Sub(f.last) < f.every {
		return
	}
	f.last = now
	st, err := f.c.Balance(f.ctx)
	if err != nil {
		if errors.Is(err, client.ErrWrongRole) || errors.Is(err, client.ErrNotFound) {
			f.disabled = true // a node without a statement to give
		}
		return
	}
	held := int64(st.Escrow / max(f.perTask, 1))
	waiting := st.Balance < f.perTask && int64(p.Pending) > held
	switch {
	case waiting && !f.waiting:
		f.st.print(fmt.Sprintf("%swaiting: balance %s cannot cover the next task's escrow of %s (%s); unfinished tasks wait for funds (credit the account, or lower --max-price or --timeout)\n",
			f.st.prefix, st.Balance, f.perTask, f.terms))
	case !waiting && f.waiting:
		f.st.print(fmt.Sprintf("%sfunds available again: balance %s\n", f.st.prefix, st.Balance))
	}
	f.waiting = waiting
}

// userError is err in the user's words: an error answer of the node's API
// becomes its message, without the method, path and HTTP status; an
// unreachable node says so.
func userError(err error) string {
	s := err.Error()
	var ae *client.APIError
	if errors.As(err, &ae) {
		s = strings.Replace(s, ae.Error(), apiMessage(ae), 1)
	}
	var ue *url.Error
	if errors.As(err, &ue) && !errors.As(err, &ae) {
		s = strings.Replace(s, ue.Error(), fmt.Sprintf("cannot reach the node at %s (is it running? 'aspen-node start'): %v", hostOf(ue.URL), ue.Err), 1)
	}
	s = strings.TrimPrefix(s, "client: ")
	return s
}

func apiMessage(ae *client.APIError) string {
	msg := strings.TrimPrefix(ae.Message, "node: ")
	switch {
	case ae.StatusCode == 401:
		return "the node refused the API token (check --token, $ASPEN_TOKEN or the node's api.token)"
	case msg == "":
		return fmt.Sprintf("the node answered %d", ae.StatusCode)
	}
	return msg
}

func hostOf(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Scheme + "://" + p.Host
	}
	return u
}
