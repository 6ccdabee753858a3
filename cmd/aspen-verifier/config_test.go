package main

import (
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/verifier"
)

func TestFileConfigReleaseGiveUp(t *testing.T) {
	fc := defaultFileConfig()
	if fc.ReleaseGiveUp != "168h0m0s" {
		t.Fatalf("default release_give_up %q", fc.ReleaseGiveUp)
	}
	fc.ReleaseGiveUp = "36h"
	cfg := verifier.DefaultConfig()
	if err := fc.apply(&cfg); err != nil || cfg.ReleaseGiveUp != 36*time.Hour {
		t.Fatalf("release_give_up 36h: %v %v", cfg.ReleaseGiveUp, err)
	}
	fc.ReleaseGiveUp = "a week"
	if err := fc.apply(&cfg); err == nil || !strings.Contains(err.Error(), "release_give_up") {
		t.Fatalf("release_give_up %q: %v", fc.ReleaseGiveUp, err)
	}
}
