package main

import "github.com/aspen-market/aspen/sandbox"

// A re-executed aspen-node serves as a sandbox executor child: jobs run in
// low-priority child processes that can be killed at their time limit.
func init() {
	prev := preMain
	preMain = func() {
		sandbox.RunChildIfRequested()
		prev()
	}
}
