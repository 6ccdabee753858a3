package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files in a node's data directory that locate its API.
const (
	AddrFile  = "api.addr"  // the API's listen address, host:port
	TokenFile = "api.token" // the API bearer token
)

// Client talks to one node's local HTTP API. It is safe for concurrent use.
type Client struct {
	base    string // scheme://host:port, no trailing slash
	token   string
	hc      *http.Client
	pollMin time.Duration
	pollMax time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: a client without an overall
// timeout; every call is bounded by its context).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithPollInterval sets the pauses between the results requests of Map,
// MapStream and Wait (default 100ms and 500ms). Each request waits on the
// node until a task finishes (long polling, up to 5 s), so a result is
// delivered as soon as it is final; after an answer with results the
// client pauses min before asking again (what finishes meanwhile comes in
// one answer), and after a failed request (the node restarting) max.
func WithPollInterval(min, max time.Duration) Option {
	return func(c *Client) {
		if min > 0 {
			c.pollMin = min
		}
		if max >= c.pollMin {
			c.pollMax = max
		} else {
			c.pollMax = c.pollMin
		}
	}
}

// New returns a client of the API at baseURL ("http://127.0.0.1:7341" or
// just "127.0.0.1:7341") authenticating with token.
func New(baseURL, token string, opts ...Option) *Client {
	base := strings.TrimRight(strings.TrimSpace(baseURL), "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c := &Client{base: base, token: strings.TrimSpace(token), hc: &http.Client{},
		pollMin: 100 * time.Millisecond, pollMax: 500 * time.Millisecond}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL returns the API's base URL.
func (c *Client) BaseURL() string { return c.base }

// DefaultDataDir is the node's default data directory: $ASPEN_DATA, else
// $HOME/.aspen.
func DefaultDataDir() string {
	if d := os.Getenv("ASPEN_DATA"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".aspen"
	}
	return filepath.Join(home, ".aspen")
}

// FromEnv returns a client of the local node found from the environment:
// $ASPEN_API and $ASPEN_TOKEN when set, else the api.addr and api.token files
// the node writes in its data directory (dataDir, or DefaultDataDir when
// empty). It is Connect("", "", dataDir).
func FromEnv(dataDir string, opts ...Option) (*Client, error) {
	return Connect("", "", dataDir, opts...)
}

// Connect resolves the API address and token the way the aspen-node
// commands do for --api, --token and --data: an explicit non-empty api or
// token wins, else $ASPEN_API / $ASPEN_TOKEN, else the files in the data
// directory (dataDir, or DefaultDataDir when empty). It only reads files;
// it does not contact the node.
func Connect(api, token, dataDir string, opts ...Option) (*Client, error) {
	if dataDir == "" {
		dataDir = DefaultDataDir()
	}
	if api == "" {
		api = os.Getenv("ASPEN_API")
	}
	if token == "" {
		token = os.Getenv("ASPEN_TOKEN")
	}
	if api == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, AddrFile))
		if err != nil {
			return nil, fmt.Errorf("%w: no --api or ASPEN_API, and %v (is the node running? start it with 'aspen-node start --data %s')",
				ErrNoAPI, err, dataDir)
		}
		api = strings.TrimSpace(string(b))
	}
	if token == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, TokenFile))
		if err != nil {
			return nil, fmt.Errorf("%w: no --token or ASPEN_TOKEN, and %v", ErrNoAPI, err)
		}
		token = strings.TrimSpace(string(b))
	}
	if api == "" || token == "" {
		return nil, fmt.Errorf("%w: empty API address or token in %s", ErrNoAPI, dataDir)
	}
	return New(api, token, opts...), nil
}

// do performs one API call. body, when not nil, is sent as is with
// contentType; a 2xx answer is decoded into out (when not nil). Other
// answers become an *APIError.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.apiError(method, path, resp, out)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if b, ok := out.(*[]byte); ok {
		if *b, err = io.ReadAll(resp.Body); err != nil {
			return fmt.Errorf("client: %s %s: %w", method, path, err)
		}
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%w: %s %s: bad JSON answer: %v", ErrServer, method, path, err)
	}
	return nil
}

// apiError reads an error answer. When out is not nil the body is also
// decoded into it (the submit endpoint answers a refused group with both
// its ID and an error).
func (c *Client) apiError(method, path string, resp *http.Response, out any) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &APIError{Method: method, Path: path, StatusCode: resp.StatusCode}
	var body struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error != "" {
		e.Message = body.Error
		if out != nil {
			if _, isBytes := out.(*[]byte); !isBytes {
				_ = json.Unmarshal(b, out)
			}
		}
	} else {
		e.Message = strings.TrimSpace(string(b))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "…"
		}
	}
	return e
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, "", out)
}

func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	return c.do(ctx, http.MethodPost, path, body, "application/json", out)
}

// isTransient reports whether err may go away by itself: the node is
// unreachable (restarting) or answered 5xx.
func isTransient(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode >= 500
	}
	var ue *url.Error
	return errors.As(err, &ue)
}
