package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
)

// upstream is a directory of CustomResourceDefinitions in an upstream
// project's Go module, at the version the docs name as supported.
type upstream struct {
	module  string
	version string   // used when no go.mod of the repository requires the module
	dir     string   // inside the module
	files   []string // nil: every *.yaml of dir
}

// The CRDs the chart and the compositions need, from their projects' modules.
// A go.mod of the repository that requires one of these modules (knative/,
// crossplane/) sets its version instead, so the version lives in one place.
var upstreams = []upstream{
	{module: "knative.dev/serving", version: "v0.46.6", dir: "config/core/300-resources"},
	{module: "github.com/cloudnative-pg/cloudnative-pg", version: "v1.29.1", dir: "config/crd/bases"},
	{module: "github.com/cloudnative-pg/plugin-barman-cloud", version: "v0.13.0", dir: "config/crd/bases"},
	// Its version: crossplane/go.mod, else xrdcrd/go.mod (the generator's).
	{module: "github.com/crossplane/crossplane/v2", dir: "cluster/crds"},
	{module: "github.com/prometheus-operator/prometheus-operator", version: "v0.87.1",
		dir:   "example/prometheus-operator-crd",
		files: []string{"monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"}},
}

// repoGoMods are the repository's Go modules whose requirements win.
var repoGoMods = []string{"knative/go.mod", "crossplane/go.mod", "knative/apiserver/xrdcrd/go.mod"}

// resolvedVersion is the version of u's module: the one a go.mod of the
// repository requires, else u.version. It names where it came from.
func (u upstream) resolvedVersion() (string, string) {
	for _, rel := range repoGoMods {
		if v := requiredVersion(filepath.Join(repoRoot(), rel), u.module); v != "" {
			return v, rel
		}
	}
	return u.version, "crds_test.go"
}

// requiredVersion reads a module's version from a go.mod's require lines.
func requiredVersion(gomod, module string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(s.Text()), "require "))
		if len(fields) >= 2 && fields[0] == module {
			return fields[1]
		}
	}
	return ""
}

// goBin is the go command that runs these tests.
func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// moduleDir downloads module@version through the module proxy (or finds it
// in the module cache) and returns its directory.
func moduleDir(module, version string) (string, error) {
	cmd := exec.Command(goBin(), "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir() // outside any module
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", module, version, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %v", module, version, err)
	}
	return info.Dir, nil
}

// crdFiles lists the YAML files of an upstream's CRD directory.
func (u upstream) crdFiles() ([]string, error) {
	version, _ := u.resolvedVersion()
	if version == "" {
		return nil, fmt.Errorf("no version of %s: no go.mod of %v requires it", u.module, repoGoMods)
	}
	dir, err := moduleDir(u.module, version)
	if err != nil {
		return nil, err
	}
	if u.files != nil {
		var paths []string
		for _, f := range u.files {
			paths = append(paths, filepath.Join(dir, u.dir, f))
		}
		return paths, nil
	}
	return filepath.Glob(filepath.Join(dir, u.dir, "*.yaml"))
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installUpstreamCRDs applies every upstream CRD and waits until each is
// Established; it returns how many.
func installUpstreamCRDs(ctx context.Context, logf func(string, ...any)) (int, error) {
	var names []string
	for _, u := range upstreams {
		files, err := u.crdFiles()
		if err != nil {
			return 0, err
		}
		version, from := u.resolvedVersion()
		logf("CRDs: %s@%s %s (version from %s), %d files\n", u.module, version, u.dir, from, len(files))
		for _, path := range files {
			f, err := os.Open(path)
			if err != nil {
				return 0, err
			}
			objs, err := decodeStream(f)
			f.Close()
			if err != nil {
				return 0, fmt.Errorf("%s: %v", path, err)
			}
			for _, o := range objs {
				if o.GetKind() != "CustomResourceDefinition" {
					continue
				}
				if _, err := apply(ctx, o, "", "crd-install", true); err != nil {
					return 0, fmt.Errorf("%s@%s %s: %v", u.module, version, filepath.Base(path), err)
				}
				names = append(names, o.GetName())
			}
		}
	}
	for _, name := range names {
		if err := waitEstablished(ctx, name); err != nil {
			return 0, err
		}
	}
	cluster.mapper.Reset()
	return len(names), nil
}

// waitEstablished waits until the CRD's Established condition is True.
func waitEstablished(ctx context.Context, name string) error {
	var last *unstructured.Unstructured
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true,
		func(ctx context.Context) (bool, error) {
			crd, err := cluster.dyn.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = crd
			return condition(crd, "Established") == "True", nil
		})
	if err != nil {
		conds, _, _ := unstructured.NestedSlice(last.Object, "status", "conditions")
		return fmt.Errorf("CRD %s not Established: %v (conditions %v)", name, err, conds)
	}
	return nil
}

// condition is the status of the object's condition of that type.
func condition(o *unstructured.Unstructured, kind string) string {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == kind {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

// Every upstream CRD the tests installed is served: each group/version/kind
// the chart and the compositions use resolves to a resource.
func TestUpstreamCRDsServeTheKindsTheRepositoryUses(t *testing.T) {
	kinds := []schema.GroupVersionKind{
		{Group: "serving.knative.dev", Version: "v1", Kind: "Service"},
		{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"},
		{Group: "postgresql.cnpg.io", Version: "v1", Kind: "ScheduledBackup"},
		{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Backup"},
		{Group: "barmancloud.cnpg.io", Version: "v1", Kind: "ObjectStore"},
		{Group: "monitoring.coreos.com", Version: "v1", Kind: "PodMonitor"},
		{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"},
		{Group: "apiextensions.crossplane.io", Version: "v2", Kind: "CompositeResourceDefinition"},
		{Group: "apiextensions.crossplane.io", Version: "v1", Kind: "Composition"},
		{Group: "pkg.crossplane.io", Version: "v1", Kind: "Function"},
		{Group: "pkg.crossplane.io", Version: "v1", Kind: "Provider"},
	}
	for _, gvk := range kinds {
		if _, err := cluster.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			t.Errorf("%s: %v", gvk, err)
		}
	}
	for _, u := range upstreams {
		v, from := u.resolvedVersion()
		t.Logf("%s@%s %s (version from %s)", u.module, v, u.dir, from)
	}
}
