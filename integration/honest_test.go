package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestHonestPay measures how often honest workers are refused pay (issue
// 14): three real aspen-node workers, no cheat, a group of jobs of each of
// three sizes, one after the other — about 10 ms, 200 ms and 2 s of run
// time on this machine (primes over widths of 8·10⁶, 1.5·10⁸ and 1.5·10⁹)
// — under the production speed rule (15% tolerance, 10 ms slack) and a 5%
// spot-check rate. Every
// replica judged (paid, too slow or refused) is counted; at most 1% may be
// refused pay. The fraction is printed with -report (README, "Honest
// replicas refused pay").
func TestHonestPay(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of real processes")
	}
	start := time.Now()
	set := settings
	set.SpotCheckRate = "0.05"
	n := startNetworkIn(t, "honest", set)
	sizes := []struct {
		name         string
		tasks, width int
	}{
		{"~10 ms", 40, 8_000_000},
		{"~200 ms", 12, 150_000_000},
		{"~2 s", 3, 1_500_000_000},
	}
	type sized struct {
		name string
		j    job
		gid  string
	}
	var groups []sized
	for _, sz := range sizes {
		j := primesJob(sz.tasks, sz.width, priceAll)
		g := sized{sz.name, j, n.submit(t, j)}
		n.waitDone(t, g.gid, 5*time.Minute)
		groups = append(groups, g)
	}
	var lines []string
	for _, g := range groups {
		before := n.honest
		v := n.judge(t, g.gid, g.j)
		if v.verified != v.tasks || v.wrongAccepted != 0 {
			t.Errorf("%s: verified %d of %d, %d wrong", g.name, v.verified, v.tasks, v.wrongAccepted)
		}
		d := honestPay{judged: n.honest.judged - before.judged, tooSlow: n.honest.tooSlow - before.tooSlow, refused: n.honest.refused - before.refused,
			overhead: n.honest.overhead[len(before.overhead):]}
		lines = append(lines, fmt.Sprintf("| %s | %d | %d | %s | %s | %s |", g.name, g.j.tasks(), d.judged, d.fraction(), d.overheads(), n.paidSummary(v.vg)))
	}
	h := n.honest
	table := fmt.Sprintf("Honest pay — %s, three aspen-node workers, no cheat, a group of each size in turn; tolerance %d%%, slack %d ms; %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), tolerancePPM/10_000, slackMicros/1000, time.Since(start).Round(time.Second))
	table += "| jobs | tasks | replicas judged | refused pay | busy time beyond the run | who was paid |\n|---|---|---|---|---|---|\n" + strings.Join(lines, "\n") +
		fmt.Sprintf("\n| all | | %d | %s | %s | |\n", h.judged, h.fraction(), h.overheads()) +
		fmt.Sprintf("\n%d too slow (%d of them against their own rating, the others against the best replica), %d refused. Busy slot time beyond the reported run time: %s.\n",
			h.tooSlow, h.tooSlowOwn, h.refused, h.overheads())
	t.Logf("honest pay:\n%s", table)
	for _, note := range h.notes {
		t.Logf("honest replica not paid: %s", note)
	}
	if *reportFlag {
		fmt.Println(table)
		if f := os.Getenv("ASPEN_REPORT_FILE"); f != "" {
			_ = os.WriteFile(f+".honest", []byte(table), 0o644)
		}
	}
	if h.tooMany() {
		t.Errorf("honest replicas refused pay: %s, more than 1%%", h.fraction())
	}
}
