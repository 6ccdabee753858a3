package main

// preMain runs before command dispatch; the sandbox hooks in here so that a
// re-executed aspen-node can serve as a sandbox executor child process.
var preMain = func() {}
