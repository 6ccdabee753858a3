package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aspen-market/aspen/protocol/units"
)

// Limits of how Map sends inputs: an input up to MaxInlineInput bytes is
// sent inside the submit request, as long as the request's inline bytes stay
// under MaxInlineTotal; other inputs are uploaded as blobs first.
const (
	MaxInlineInput = 64 << 10
	MaxInlineTotal = 64 << 20
)

const (
	uploadWorkers = 4
	resultsPage   = 256
	// longPoll is how long one results request waits for a task to
	// finish; progress is reported at least this often.
	longPoll = 5 * time.Second
	// pollGiveUp is how long Map and Wait keep polling a node that is
	// unreachable or failing (e.g. restarting) before giving up.
	pollGiveUp = 30 * time.Second
	// cancelTimeout bounds the cancel request sent when a map's context is
	// canceled.
	cancelTimeout = 10 * time.Second
)

// MapOptions are the terms of a map. MaxPrice is required.
type MapOptions struct {
	Name      string        // a label shown in listings
	MaxPrice  units.Micros  // maximum price per hour of a worker's machine
	MinSpeed  units.Speed   // minimum worker speed; 0 means any
	Replicas  int           // workers per input; 0 means 2 (the minimum)
	Timeout   time.Duration // running time limit per job; 0 means the node's default (2h)
	MaxMemory uint64        // memory cap per job in bytes; 0 means the node's default
	// Progress, when set, is called after every answer of the node (at
	// least every 5 s while the group runs), from the goroutine running
	// the map.
	Progress func(Progress)
}

// Progress is a map's progress, reported after every answer of the node.
type Progress struct {
	Group    string // the job group's ID
	Total    int    // inputs
	Pending  int    // not finished yet
	Verified int    // verified by the verifier (including jobs that trapped or exited non-zero)
	Failed   int    // failed by the verifier (e.g. no eligible workers)
	Canceled int
	Errors   int           // finished results that carry an error (failed, canceled, trap, non-zero exit, ...)
	Spent    units.Micros  // charged so far
	Elapsed  time.Duration // since the group was submitted
	Rate     float64       // finished tasks per second so far
	ETA      time.Duration // estimated time to finish; 0 when unknown or done
}

// Finished is the number of inputs whose result is final.
func (p Progress) Finished() int { return p.Verified + p.Failed + p.Canceled }

// Result is the outcome of one input.
type Result struct {
	Index    int    // the input's position
	Stdout   []byte // the job's output (when the job ran)
	Stderr   []byte
	ExitCode uint32
	Status   string // how the job ended: ok, exit, trap, timeout, ... ("" when it did not run)
	Message  string // the sandbox's description of a trap or limit
	Charged  units.Micros
	// Err is nil when the job exited 0. Otherwise it is a *TaskError (a
	// trap, a non-zero exit, a limit, a task failed by the verifier or
	// canceled), or, for an input that had not finished when Map returned,
	// an error wrapping ErrNotFinished.
	Err error
}

// Map runs module on every input through the market and returns one Result
// per input, in input order. The module is uploaded once; inputs up to
// MaxInlineInput bytes travel inline, larger ones are uploaded as blobs.
//
// The returned error concerns the call as a whole; per-input failures are
// in Result.Err. If ctx is canceled, Map cancels the group on the node (so
// the escrow of unfinished tasks is refunded) and returns the results
// received so far with an error wrapping ctx.Err(); unfinished inputs have
// Err wrapping ErrNotFinished. If the verifier refuses the group (e.g.
// insufficient funds), the refused inputs fail and the error wraps
// ErrRefused. Results is nil only when nothing was submitted.
func (c *Client) Map(ctx context.Context, module []byte, inputs [][]byte, opts MapOptions) ([]Result, error) {
	res := make([]Result, len(inputs))
	got := make([]bool, len(inputs))
	submitted, err := c.mapStream(ctx, module, inputs, opts, func(r Result) {
		res[r.Index], got[r.Index] = r, true
	})
	if !submitted {
		return nil, err
	}
	for i := range res {
		if !got[i] {
			res[i] = Result{Index: i, Err: fmt.Errorf("input %d: %w", i, ErrNotFinished)}
		}
	}
	return res, err
}

// MapStream is Map delivering each result to fn as soon as it is final, in
// whatever order tasks finish. fn is called from the calling goroutine,
// never concurrently, exactly once per finished input. It returns when
// every input has been delivered, or with the same errors as Map.
func (c *Client) MapStream(ctx context.Context, module []byte, inputs [][]byte, opts MapOptions, fn func(Result)) error {
	_, err := c.mapStream(ctx, module, inputs, opts, fn)
	return err
}

func (c *Client) mapStream(ctx context.Context, module []byte, inputs [][]byte, opts MapOptions, fn func(Result)) (bool, error) {
	if fn == nil {
		fn = func(Result) {}
	}
	id, start, submitErr := c.submitMap(ctx, module, inputs, opts)
	if id == "" {
		if ctx.Err() != nil {
			return false, fmt.Errorf("client: map: %w", ctx.Err())
		}
		return false, submitErr
	}
	if submitErr != nil && !errors.Is(submitErr, ErrRefused) {
		// The node created the group but could not hand all of it to the
		// verifier: do not leave it waiting.
		return true, errors.Join(submitErr, c.cancelQuietly(ctx, id))
	}
	w := newWatcher(c, id, len(inputs), start, opts.Progress, fn)
	err := w.run(ctx)
	if ctx.Err() != nil {
		return true, errors.Join(fmt.Errorf("client: map: group %s canceled: %w", id, ctx.Err()), c.cancelQuietly(ctx, id))
	}
	if err != nil {
		return true, fmt.Errorf("following group %s (it keeps running; see 'aspen-node groups %s'): %w", id, id, err)
	}
	if submitErr != nil {
		return true, fmt.Errorf("group %s: %w", id, submitErr)
	}
	return true, nil
}

// SubmitMap uploads the module and the large inputs and submits the group,
// as Map does, but does not follow it: it returns the group's ID at once
// (follow the group with Wait or Results). When the verifier refuses part
// of the group after the node created it, it returns both the ID and an
// error wrapping ErrRefused; when no group was created, "" and the error.
func (c *Client) SubmitMap(ctx context.Context, module []byte, inputs [][]byte, opts MapOptions) (string, error) {
	id, _, err := c.submitMap(ctx, module, inputs, opts)
	return id, err
}

// cancelQuietly cancels group id with a fresh, short context derived from
// ctx's values (ctx itself may be canceled already).
func (c *Client) cancelQuietly(ctx context.Context, id string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer cancel()
	if _, err := c.Cancel(cctx, id); err != nil {
		return fmt.Errorf("canceling group %s (cancel it with 'aspen-node groups --cancel %s'): %w", id, id, err)
	}
	return nil
}

// submitMap uploads the module and the large inputs and submits the group.
// It returns the group's ID ("" when no group was created), the time of
// submission and any error.
func (c *Client) submitMap(ctx context.Context, module []byte, inputs [][]byte, opts MapOptions) (string, time.Time, error) {
	switch {
	case len(module) == 0:
		return "", time.Time{}, fmt.Errorf("%w: no module", ErrBadRequest)
	case len(inputs) == 0:
		return "", time.Time{}, fmt.Errorf("%w: no inputs", ErrBadRequest)
	case opts.MaxPrice <= 0:
		return "", time.Time{}, fmt.Errorf("%w: the maximum price per hour must be positive", ErrBadRequest)
	case opts.Replicas < 0 || opts.Replicas == 1:
		return "", time.Time{}, fmt.Errorf("%w: replicas must be at least 2 (every job runs on at least two workers)", ErrBadRequest)
	case opts.Timeout < 0:
		return "", time.Time{}, fmt.Errorf("%w: negative timeout", ErrBadRequest)
	}
	modCID, err := c.PutBlob(ctx, module)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("uploading module: %w", err)
	}
	req := SubmitRequest{Name: opts.Name, Module: modCID, Inputs: make([]Input, len(inputs)),
		MaxPrice: opts.MaxPrice.String(), Replicas: opts.Replicas, MaxMemory: opts.MaxMemory}
	if opts.MinSpeed > 0 {
		req.MinSpeed = opts.MinSpeed.String()
	}
	if opts.Timeout > 0 {
		req.Timeout = opts.Timeout.String()
	}
	var upload []int
	inline := 0
	for i, in := range inputs {
		if len(in) <= MaxInlineInput && inline+len(in) <= MaxInlineTotal {
			req.Inputs[i].Data = in
			inline += len(in)
		} else {
			upload = append(upload, i)
		}
	}
	if err := c.uploadInputs(ctx, inputs, upload, req.Inputs); err != nil {
		return "", time.Time{}, err
	}
	start := time.Now()
	resp, err := c.Submit(ctx, req)
	if resp == nil {
		return "", start, fmt.Errorf("submitting group: %w", err)
	}
	return resp.ID, start, err
}

// uploadInputs uploads inputs[i] for every i in idx, a few at a time, and
// sets specs[i].CID.
func (c *Client) uploadInputs(ctx context.Context, inputs [][]byte, idx []int, specs []Input) error {
	if len(idx) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range min(uploadWorkers, len(idx)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				cid, err := c.PutBlob(ctx, inputs[i])
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("uploading input %d: %w", i, err)
					}
					mu.Unlock()
					cancel()
					continue
				}
				specs[i].CID = cid
			}
		}()
	}
feed:
	for _, i := range idx {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// Wait follows an already-submitted group until every task is final,
// calling fn once for each finished task (in the order they finish) and
// progress, when not nil, after every answer of the node (at least every
// 5 s). Unlike Map, canceling ctx only
// stops waiting: the group keeps running.
func (c *Client) Wait(ctx context.Context, id string, progress func(Progress), fn func(Result)) error {
	g, err := c.Group(ctx, id)
	if err != nil {
		return err
	}
	start := time.Now()
	if g.Created > 0 && g.CreatedTime().Before(start) {
		start = g.CreatedTime()
	}
	if fn == nil {
		fn = func(Result) {}
	}
	if err := newWatcher(c, id, g.Tasks, start, progress, fn).run(ctx); err != nil {
		return fmt.Errorf("waiting for group %s: %w", id, err)
	}
	return nil
}

// watcher follows a group through the results cursor and delivers each
// finished task's result once.
type watcher struct {
	c        *Client
	id       string
	total    int
	start    time.Time
	progress func(Progress)
	fn       func(Result)

	done      []bool
	delivered int
	counts    map[string]int // delivered results by state
	errs      int
	charged   units.Micros
}

func newWatcher(c *Client, id string, total int, start time.Time, progress func(Progress), fn func(Result)) *watcher {
	return &watcher{c: c, id: id, total: total, start: start, progress: progress, fn: fn,
		done: make([]bool, total), counts: map[string]int{}}
}

// run asks for the results that finished after its cursor, each request
// waiting up to longPoll for one, until every task has been delivered, ctx
// is done, or the node fails for longer than pollGiveUp (or refuses the
// requests outright). After an answer with results it pauses pollMin
// (more finish meanwhile: fewer, fuller answers) unless the node has more
// at once.
func (w *watcher) run(ctx context.Context) error {
	cursor := "0"
	var failingSince time.Time
	var pause time.Duration
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		if pause > 0 {
			timer.Reset(pause)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		}
		page, err := w.c.ResultsSince(ctx, w.id, cursor, resultsPage, longPoll)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && !isTransient(err):
			return err
		case err != nil:
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > pollGiveUp {
				return fmt.Errorf("node failing for %s: %w", pollGiveUp, err)
			}
			pause = w.c.pollMax
			continue
		}
		failingSince = time.Time{}
		for _, r := range page.Results {
			if i := int(r.Index); i >= 0 && i < w.total && !w.done[i] && Finished(r.State) {
				w.deliver(r)
			}
		}
		if page.Next != "" {
			cursor = page.Next
		}
		if w.progress != nil {
			w.progress(w.report(&page.Group))
		}
		switch {
		case w.delivered >= w.total:
			return nil
		case page.Done:
			return fmt.Errorf("%w: the node says every task is final, but %d of %d results were not listed", ErrServer,
				w.total-w.delivered, w.total)
		case page.More:
			pause = 0
		default:
			// After results, or after a wait that ended with none (a node
			// shutting down answers at once): never a busy loop.
			pause = w.c.pollMin
		}
	}
}

func (w *watcher) deliver(r TaskResult) {
	i := int(r.Index)
	w.done[i] = true
	w.delivered++
	w.counts[r.State]++
	w.charged += r.Charged
	res := Result{Index: i, Stdout: r.Stdout, Stderr: r.Stderr, ExitCode: r.ExitCode, Status: r.Status,
		Message: r.Message, Charged: r.Charged}
	if r.State != StateVerified || r.Status != StatusOK {
		res.Err = &TaskError{Index: i, State: r.State, Reason: r.Reason, Status: r.Status, ExitCode: r.ExitCode,
			Message: r.Message, Stderr: r.Stderr}
		w.errs++
	}
	w.fn(res)
}

func (w *watcher) report(g *Group) Progress {
	p := Progress{Group: w.id, Total: w.total, Pending: w.total - w.delivered, Verified: w.counts[StateVerified],
		Failed: w.counts[StateFailed], Canceled: w.counts[StateCanceled], Errors: w.errs,
		Spent: max(g.Spent, w.charged), Elapsed: time.Since(w.start)}
	if secs := p.Elapsed.Seconds(); secs > 0 {
		p.Rate = float64(w.delivered) / secs
	}
	if p.Rate > 0 && p.Pending > 0 {
		p.ETA = time.Duration(float64(p.Pending) / p.Rate * float64(time.Second))
	}
	return p
}
