// Package docs holds the project's documents; its test checks the OpenAPI
// description of the node's API against the routes the node registers.
package docs

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestOpenAPICoversNodeRoutes: every route node/api.go registers under /v1
// has an entry in openapi.yaml with the same method, and the document
// describes no route the node does not serve; every $ref resolves.
func TestOpenAPICoversNodeRoutes(t *testing.T) {
	src, err := os.ReadFile("../node/api.go")
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, m := range regexp.MustCompile(`HandleFunc\("([A-Z]+) (/v1/[^"]*)"`).FindAllStringSubmatch(string(src), -1) {
		registered[strings.ToLower(m[1])+" "+m[2]] = true
	}
	if len(registered) < 10 {
		t.Fatalf("found only %d routes in node/api.go: did its registration change form?", len(registered))
	}
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi: %q, want 3.x", doc.OpenAPI)
	}
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			described[method+" "+path] = true
			if o, ok := op.(map[string]any); !ok || o["responses"] == nil {
				t.Errorf("%s %s: no responses", method, path)
			}
		}
	}
	var missing, extra []string
	for r := range registered {
		if !described[r] {
			missing = append(missing, r)
		}
	}
	for r := range described {
		if !registered[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes the node serves without an entry in openapi.yaml: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("openapi.yaml describes routes the node does not serve: %v", extra)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\$ref: "#/([^"]+)"`).FindAllStringSubmatch(string(raw), -1) {
		var at any = tree
		for _, part := range strings.Split(m[1], "/") {
			mm, ok := at.(map[string]any)
			if !ok || mm[part] == nil {
				t.Errorf("$ref #/%s does not resolve", m[1])
				break
			}
			at = mm[part]
		}
	}
}
