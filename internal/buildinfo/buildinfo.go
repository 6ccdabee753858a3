// Package buildinfo describes the running binary from the build
// information the Go toolchain embeds (runtime/debug.ReadBuildInfo): the
// module version, the Go version and, when built from a checkout, the
// commit.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Info is what the binary knows about its build.
type Info struct {
	Module    string `json:"module" yaml:"module"`
	Version   string `json:"version" yaml:"version"` // the module's version, "(devel)" for a local build
	GoVersion string `json:"go" yaml:"go"`
	Platform  string `json:"platform" yaml:"platform"` // GOOS/GOARCH
	Commit    string `json:"commit,omitempty" yaml:"commit,omitempty"`
	Time      string `json:"commit_time,omitempty" yaml:"commit_time,omitempty"`
	Modified  bool   `json:"modified,omitempty" yaml:"modified,omitempty"` // built from a checkout with uncommitted changes
}

// Read returns the running binary's build information.
func Read() Info {
	in := Info{Version: "(unknown)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	in.Module, in.Version = bi.Main.Path, bi.Main.Version
	if in.Version == "" {
		in.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// String is one line: "(devel) go1.26.8 linux/amd64 commit 1a2b3c4d5e6f (modified)".
func (in Info) String() string {
	s := in.Version + " " + in.GoVersion + " " + in.Platform
	if in.Commit != "" {
		c := in.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += " commit " + c
		if in.Modified {
			s += " (modified)"
		}
	}
	return s
}
