package node

import "errors"

// Sentinel errors of the node.
var (
	ErrNotConsumer   = errors.New("node: not running as a consumer")
	ErrNotWorker     = errors.New("node: not running as a worker")
	ErrUnknownGroup  = errors.New("node: unknown job group")
	ErrUnknownTask   = errors.New("node: unknown task")
	ErrNotReady      = errors.New("node: result not ready")
	ErrInvalidModule = errors.New("node: module does not compile")
	ErrBadRequest    = errors.New("node: bad request")
	ErrRefused       = errors.New("node: refused by verifier")
	ErrClosed        = errors.New("node: closed")
)
