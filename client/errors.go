package client

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Sentinel errors. Errors returned by this package wrap one of them where it
// applies; test with errors.Is.
var (
	// ErrNoAPI: the node's API address or token could not be found.
	ErrNoAPI = errors.New("client: node API not configured")
	// ErrUnauthorized: the node refused the API token (HTTP 401).
	ErrUnauthorized = errors.New("client: API token refused")
	// ErrBadRequest: the request was invalid, e.g. a module that does not
	// compile or a malformed price (HTTP 400, or refused before sending).
	ErrBadRequest = errors.New("client: bad request")
	// ErrRefused: the verifier refused the work, e.g. insufficient funds or
	// no eligible workers (HTTP 402).
	ErrRefused = errors.New("client: refused by the verifier")
	// ErrNotFound: no such group, task or blob (HTTP 404).
	ErrNotFound = errors.New("client: not found")
	// ErrWrongRole: the node does not have the role the call needs, e.g.
	// job history on a node that is not a worker (HTTP 409).
	ErrWrongRole = errors.New("client: node does not have that role")
	// ErrServer: the node failed the request (HTTP 5xx) or answered
	// something this client does not understand.
	ErrServer = errors.New("client: node error")
	// ErrJobFailed: a task finished without a successful result: a trap, a
	// non-zero exit, a limit, or a task the verifier failed or that was
	// canceled. Result.Err wraps it (as a *TaskError).
	ErrJobFailed = errors.New("job failed")
	// ErrNotFinished: the task had not finished when Map returned (its
	// context was canceled or the map failed).
	ErrNotFinished = errors.New("not finished")
)

// APIError is an error answer from the node's API.
type APIError struct {
	Method     string
	Path       string
	StatusCode int    // HTTP status
	Message    string // the node's {"error": ...}
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("client: %s %s: %d: %s", e.Method, e.Path, e.StatusCode, msg)
}

// Unwrap maps the HTTP status to this package's sentinels.
func (e *APIError) Unwrap() error {
	switch {
	case e.StatusCode == http.StatusUnauthorized:
		return ErrUnauthorized
	case e.StatusCode == http.StatusPaymentRequired:
		return ErrRefused
	case e.StatusCode == http.StatusNotFound:
		return ErrNotFound
	case e.StatusCode == http.StatusConflict:
		return ErrWrongRole
	case e.StatusCode >= 400 && e.StatusCode < 500:
		return ErrBadRequest
	}
	return ErrServer
}

// TaskError is the per-item error of a task that did not succeed: carried
// in Result.Err.
type TaskError struct {
	Index    int
	State    string // verified, failed or canceled (see Task states)
	Reason   string // why the verifier failed the task (State failed)
	Status   string // how the job ended when State is verified: exit, trap, timeout, ...
	ExitCode uint32
	Message  string // the sandbox's description, e.g. of a trap
	Stderr   []byte // the job's own stderr
}

// Error is one line: "input 7: job exited with status 3: <first stderr line>".
func (e *TaskError) Error() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "input %d: ", e.Index)
	switch e.State {
	case StateFailed:
		b.WriteString("failed")
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		}
		return b.String()
	case StateCanceled:
		b.WriteString("canceled")
		return b.String()
	case StateVerified:
	default:
		fmt.Fprintf(&b, "%s", e.State)
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		}
		return b.String()
	}
	switch e.Status {
	case StatusExit:
		fmt.Fprintf(&b, "job exited with status %d", e.ExitCode)
	case StatusTrap:
		b.WriteString("job trapped")
	case StatusTimeout:
		b.WriteString("job exceeded its time limit")
	case StatusMemoryLimit:
		b.WriteString("job exceeded its memory cap")
	case StatusOutputLimit:
		b.WriteString("job exceeded the output limit")
	case StatusInvalidModule:
		b.WriteString("invalid module")
	case StatusMissingImport:
		b.WriteString("module imports what the sandbox does not provide")
	case StatusWorkLimit:
		b.WriteString("job exceeded its work budget")
	case StatusFetchFailed:
		b.WriteString("workers could not fetch the module or input")
	default:
		fmt.Fprintf(&b, "job ended with status %q (exit %d)", e.Status, e.ExitCode)
	}
	detail := firstLine(e.Stderr)
	if detail == "" {
		detail = firstLine([]byte(e.Message))
	}
	if detail != "" {
		b.WriteString(": " + detail)
	}
	return b.String()
}

// Unwrap returns ErrJobFailed.
func (e *TaskError) Unwrap() error { return ErrJobFailed }

// firstLine returns the first non-blank line of b, trimmed, made valid
// UTF-8 and shortened to at most 200 bytes.
func firstLine(b []byte) string {
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		l := strings.ToValidUTF8(string(bytes.TrimSpace(line)), "\uFFFD")
		if l == "" {
			continue
		}
		if len(l) > 200 {
			cut := 200
			for cut > 0 && !utf8.RuneStart(l[cut]) {
				cut--
			}
			l = l[:cut] + "…"
		}
		return l
	}
	return ""
}
