package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/aspen-market/aspen/client"
)

// status draws progress on stderr: a bar redrawn in place when stderr is a
// terminal (or with --progress), else a line every few seconds. Results
// never share a line with the bar: when stdout is the same terminal the bar
// is cleared before results are written and drawn again after them.
type status struct {
	w       io.Writer
	prefix  string // "aspen-node COMMAND: "
	seen    bool   // update was called
	hide    bool   // no progress display (but failures and the summary)
	quiet   bool
	wantBar bool
	outTTY  bool // stdout is a terminal: results go where the bar is
	bar     *progressbar.ProgressBar
	header  bool
	lastOut time.Time
	last    client.Progress
	now     func() time.Time
}

const (
	barRedraw = 100 * time.Millisecond
	lineEvery = 5 * time.Second
	barWidth  = 30
)

// isTerminal reports whether w is a terminal. A variable so tests can
// pretend.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

func newStatus(stdout, stderr io.Writer, command string, quiet, forceBar bool) *status {
	return &status{w: stderr, prefix: "aspen-node " + command + ": ", quiet: quiet,
		wantBar: forceBar || isTerminal(stderr), outTTY: isTerminal(stdout), now: time.Now}
}

func (s *status) update(p client.Progress) {
	s.last, s.seen = p, true
	if s.quiet || s.hide {
		return
	}
	if !s.header {
		s.header = true
		s.print(fmt.Sprintf("%sgroup %s: %d inputs\n", s.prefix, p.Group, p.Total))
	}
	now := s.now()
	finished := p.Pending == 0
	if s.wantBar {
		if finished || now.Sub(s.lastOut) >= barRedraw {
			s.lastOut = now
			s.drawBar(p)
		}
		return
	}
	if finished || s.lastOut.IsZero() || now.Sub(s.lastOut) >= lineEvery {
		s.lastOut = now
		fmt.Fprintf(s.w, "%s%s\n", s.prefix, progressLine(p))
	}
}

func (s *status) drawBar(p client.Progress) {
	if s.bar == nil {
		s.bar = progressbar.NewOptions(max(p.Total, 1),
			progressbar.OptionSetWriter(s.w),
			progressbar.OptionSetWidth(barWidth), // narrowed to fit the terminal
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetRenderBlankState(false),
			progressbar.OptionUseANSICodes(true),
		)
	}
	s.bar.Describe(progressLine(p))
	_ = s.bar.Set(p.Finished())
}

// print writes text (whole lines) on stderr, above the bar.
func (s *status) print(text string) {
	s.aboveBar(func() { fmt.Fprint(s.w, text) })
}

// aboveBar runs write (which writes whole lines to stderr, or to stdout)
// with the bar cleared, then draws the bar again.
func (s *status) aboveBar(write func()) {
	if s.bar == nil || s.bar.IsFinished() {
		write()
		return
	}
	_ = s.bar.Clear()
	write()
	_ = s.bar.RenderBlank()
}

// done removes the bar: the summary line follows.
func (s *status) done() {
	if s.bar != nil {
		_ = s.bar.Clear()
		_ = s.bar.Exit()
		s.bar = nil
	}
}

// progressLine is e.g. "45/100 done (40 verified, 5 failed), 12.3/s, ETA 4s, spent 0.0123".
func progressLine(p client.Progress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d done (%d verified, %d failed)", p.Finished(), p.Total, p.Finished()-p.Errors, p.Errors)
	if p.Rate > 0 {
		fmt.Fprintf(&b, ", %s/s", formatRate(p.Rate))
	}
	if eta := roundDur(p.ETA); p.ETA > 0 && eta != "0s" {
		fmt.Fprintf(&b, ", ETA %s", eta)
	}
	fmt.Fprintf(&b, ", spent %s", p.Spent)
	return b.String()
}

func formatRate(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 1:
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.3f", r)
}

// roundDur rounds d for display: 2h, 1h2m, 10m, 3m5s, 12s, 1.4s, 440ms.
func roundDur(d time.Duration) string {
	var s string
	switch {
	case d >= time.Hour:
		s = d.Round(time.Minute).String()
	case d >= 10*time.Second:
		s = d.Round(time.Second).String()
	case d >= time.Second:
		s = d.Round(100 * time.Millisecond).String()
	default:
		s = d.Round(time.Millisecond).String()
	}
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
