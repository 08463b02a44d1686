package checks

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// TestTheDocsNameTheVersionsPinnedInGoMod: crossplane/go.mod is the one place the upstream
// versions are pinned; docs/crossplane.md states them (table and install commands) and must agree.
func TestTheDocsNameTheVersionsPinnedInGoMod(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.Parse("go.mod", raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	version := map[string]string{}
	for _, r := range mod.Require {
		version[r.Mod.Path] = r.Mod.Version
	}
	docBytes, err := os.ReadFile(filepath.Join(root, "..", "docs", "crossplane.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(docBytes)
	minor := func(v string) string { return strings.Join(strings.Split(strings.TrimPrefix(v, "v"), ".")[:2], ".") }

	crossplane, cnpg, barman := version["github.com/crossplane/crossplane/v2"], version["github.com/cloudnative-pg/cloudnative-pg"],
		version["github.com/cloudnative-pg/plugin-barman-cloud"]
	want := []string{
		"`go " + mod.Go.Version + "`",
		"--version " + strings.TrimPrefix(crossplane, "v"),  // helm install crossplane
		"APP VERSION is " + minor(cnpg) + ".x",              // helm install cloudnative-pg
		"image.tag=" + barman, "sidecarImage.tag=" + barman, // helm install plugin-barman-cloud
		"Crossplane " + minor(crossplane), "CloudNativePG " + minor(cnpg),
	}
	for _, path := range []string{"github.com/crossplane/crossplane/v2", "github.com/cloudnative-pg/cloudnative-pg",
		"github.com/cloudnative-pg/plugin-barman-cloud", "github.com/crossplane/function-sdk-go",
		"github.com/Masterminds/sprig/v3", "k8s.io/api"} {
		if version[path] == "" {
			t.Errorf("go.mod does not require %s", path)
		}
		want = append(want, "`"+path+"` | "+version[path])
	}
	fn, err := os.ReadFile(filepath.Join(root, "functions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pkg := regexp.MustCompile(`function-go-templating:(v[0-9.]+)`).FindSubmatch(fn)
	if pkg == nil {
		t.Fatal("functions.yaml names no function-go-templating version")
	}
	want = append(want, "`github.com/crossplane-contrib/function-go-templating` | "+string(pkg[1]))
	for _, w := range want {
		if !strings.Contains(doc, w) {
			t.Errorf("docs/crossplane.md does not say %q (from crossplane/go.mod or functions.yaml)", w)
		}
	}
	// Nothing else in the docs names another version of these.
	for _, stale := range regexp.MustCompile(`(?:--version |image\.tag=v?|Crossplane |CloudNativePG )([0-9]+\.[0-9]+(?:\.[0-9]+)?)`).FindAllStringSubmatch(doc, -1) {
		ok := false
		for _, v := range []string{crossplane, cnpg, barman} {
			if strings.HasPrefix(strings.TrimPrefix(v, "v"), stale[1]) {
				ok = true
			}
		}
		if !ok && !strings.Contains(stale[0], "cert-manager") {
			t.Errorf("docs/crossplane.md says %q, which go.mod does not pin", stale[0])
		}
	}
}
