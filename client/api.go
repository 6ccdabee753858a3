package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Info describes the node (GET /v1/info).
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var in Info
	if err := c.getJSON(ctx, "/v1/info", &in); err != nil {
		return nil, err
	}
	return &in, nil
}

// PutBlob stores data on the node as a content-addressed blob and returns
// its CID (POST /v1/blobs).
func (c *Client) PutBlob(ctx context.Context, data []byte) (string, error) {
	var ref struct {
		CID  string `json:"cid"`
		Size int64  `json:"size"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/blobs", bytes.NewReader(data), "application/octet-stream", &ref); err != nil {
		return "", err
	}
	if ref.CID == "" || ref.Size != int64(len(data)) {
		return "", fmt.Errorf("%w: blob upload answered cid %q size %d for %d bytes", ErrServer, ref.CID, ref.Size, len(data))
	}
	return ref.CID, nil
}

// GetBlob returns a blob's bytes (GET /v1/blobs/{cid}).
func (c *Client) GetBlob(ctx context.Context, cid string) ([]byte, error) {
	var b []byte
	if err := c.getJSON(ctx, "/v1/blobs/"+url.PathEscape(cid), &b); err != nil {
		return nil, err
	}
	return b, nil
}

// Submit creates a job group (POST /v1/groups). The module and any input
// given by CID must have been uploaded with PutBlob. When the verifier
// refuses part of the group after the node created it, Submit returns both
// the response (with the group's ID; the refused tasks are failed) and an
// error wrapping ErrRefused.
func (c *Client) Submit(ctx context.Context, req SubmitRequest) (*SubmitResponse, error) {
	var resp SubmitResponse
	if err := c.postJSON(ctx, "/v1/groups", req, &resp); err != nil {
		if resp.ID != "" {
			return &resp, err
		}
		return nil, err
	}
	if resp.ID == "" {
		return nil, fmt.Errorf("%w: submit answered no group ID", ErrServer)
	}
	return &resp, nil
}

// Groups lists the node's job groups, newest first (GET /v1/groups).
func (c *Client) Groups(ctx context.Context) ([]Group, error) {
	var gs []Group
	if err := c.getJSON(ctx, "/v1/groups", &gs); err != nil {
		return nil, err
	}
	return gs, nil
}

// Group returns one group's progress (GET /v1/groups/{id}).
func (c *Client) Group(ctx context.Context, id string) (*Group, error) {
	var g Group
	if err := c.getJSON(ctx, "/v1/groups/"+url.PathEscape(id), &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// Tasks returns a group's tasks in input order (GET /v1/groups/{id}/tasks).
func (c *Client) Tasks(ctx context.Context, id string) ([]Task, error) {
	var ts []Task
	if err := c.getJSON(ctx, "/v1/groups/"+url.PathEscape(id)+"/tasks", &ts); err != nil {
		return nil, err
	}
	return ts, nil
}

// Results returns up to limit entries of a group's results, in input
// order, starting at input index from (GET /v1/groups/{id}/results). Every
// task has an entry, finished or not; limit <= 0 means the node's default
// (1000). To follow a group as it finishes, use ResultsSince.
func (c *Client) Results(ctx context.Context, id string, from, limit int) ([]TaskResult, error) {
	q := url.Values{}
	q.Set("from", fmt.Sprint(from))
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var rs []TaskResult
	if err := c.getJSON(ctx, "/v1/groups/"+url.PathEscape(id)+"/results?"+q.Encode(), &rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// ResultsSince returns the results of a group's tasks that finished after
// cursor, in the order they finished (GET
// /v1/groups/{id}/results?since=cursor): "" or "0" starts at the first,
// and the answer's Next is the cursor for what finishes after it, so each
// result is received once (the node keeps the order across restarts).
// When nothing new has finished and wait > 0, the node waits up to wait
// (at most a minute) for a task to finish before answering with none.
// limit <= 0 means the node's default (1000).
func (c *Client) ResultsSince(ctx context.Context, id, cursor string, limit int, wait time.Duration) (*ResultsPage, error) {
	if cursor == "" {
		cursor = "0"
	}
	q := url.Values{}
	q.Set("since", cursor)
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	path := "/v1/groups/" + url.PathEscape(id) + "/results?" + q.Encode()
	var raw json.RawMessage
	if err := c.getJSON(ctx, path, &raw); err != nil {
		return nil, err
	}
	if b := bytes.TrimSpace(raw); len(b) > 0 && b[0] == '[' {
		return nil, fmt.Errorf("%w: GET %s: the node answered a list: it predates results by cursor (upgrade aspen-node)", ErrServer, path)
	}
	var page ResultsPage
	if err := json.Unmarshal(raw, &page); err != nil {
		return nil, fmt.Errorf("%w: GET %s: bad JSON answer: %v", ErrServer, path, err)
	}
	return &page, nil
}

// Cancel stops a group's unfinished tasks; the verifier refunds their
// escrow (POST /v1/groups/{id}/cancel). It returns the group's status.
func (c *Client) Cancel(ctx context.Context, id string) (*Group, error) {
	var g Group
	if err := c.postJSON(ctx, "/v1/groups/"+url.PathEscape(id)+"/cancel", nil, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// Balance returns the verifier's signed statement of the node's account
// (GET /v1/balance).
func (c *Client) Balance(ctx context.Context) (*Statement, error) {
	var st Statement
	if err := c.getJSON(ctx, "/v1/balance", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Offers returns the unexpired worker offers the node has seen
// (GET /v1/offers).
func (c *Client) Offers(ctx context.Context) ([]Offer, error) {
	var os []Offer
	if err := c.getJSON(ctx, "/v1/offers", &os); err != nil {
		return nil, err
	}
	return os, nil
}

// Peers returns the node's connected peers (GET /v1/peers).
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var ps []Peer
	if err := c.getJSON(ctx, "/v1/peers", &ps); err != nil {
		return nil, err
	}
	return ps, nil
}

// Jobs returns a worker's job history, up to limit entries (0: the node's
// default) (GET /v1/jobs).
func (c *Client) Jobs(ctx context.Context, limit int) ([]Job, error) {
	path := "/v1/jobs"
	if limit > 0 {
		path += fmt.Sprintf("?limit=%d", limit)
	}
	var js []Job
	if err := c.getJSON(ctx, path, &js); err != nil {
		return nil, err
	}
	return js, nil
}
