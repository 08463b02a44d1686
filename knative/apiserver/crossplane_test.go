package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

func crossplaneDir() string { return filepath.Join(repoRoot(), "crossplane") }

// The CRD Crossplane generates for the XRD (knative/apiserver/xrdcrd runs
// Crossplane's own generator), installed and Established once.
var xrCRD struct {
	once sync.Once
	err  error
}

func installXRCRD(t testing.TB) {
	t.Helper()
	xrCRD.once.Do(func() { xrCRD.err = generateAndInstallXRCRD(t) })
	if xrCRD.err != nil {
		t.Fatal(xrCRD.err)
	}
}

func generateAndInstallXRCRD(t testing.TB) error {
	dir := filepath.Join(repoRoot(), "knative", "apiserver", "xrdcrd")
	bin := filepath.Join(os.TempDir(), fmt.Sprintf("exam-results-xrdcrd-%d", os.Getpid()))
	defer os.Remove(bin)
	build := exec.Command(goBin(), "build", "-o", bin, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building xrdcrd: %v\n%s", err, out)
	}
	path := filepath.Join(crossplaneDir(), "apis", "postgrescluster", "definition.yaml")
	// The XRD first: the generated CRD is owned by it, as in a cluster.
	owners := map[string]types.UID{}
	for _, xrd := range decodeFile(t, path) {
		live, err := apply(context.Background(), xrd, "", "kubectl", false)
		if err != nil {
			return fmt.Errorf("the XRD is rejected: %v", err)
		}
		owners[live.GetName()] = live.GetUID()
	}
	def, err := os.Open(path)
	if err != nil {
		return err
	}
	defer def.Close()
	gen := exec.Command(bin)
	gen.Stdin = def
	out, err := gen.Output()
	if err != nil {
		return fmt.Errorf("xrdcrd: %v", err)
	}
	crds, err := decodeStream(bytes.NewReader(out))
	if err != nil {
		return err
	}
	for _, crd := range crds {
		refs := crd.GetOwnerReferences()
		for i := range refs {
			refs[i].UID = owners[refs[i].Name]
		}
		crd.SetOwnerReferences(refs)
		if _, err := apply(context.Background(), crd, "", "apiextensions.crossplane.io/definition", true); err != nil {
			return fmt.Errorf("the CRD Crossplane generates for the XRD is rejected: %v", err)
		}
		if err := waitEstablished(context.Background(), crd.GetName()); err != nil {
			return err
		}
		t.Logf("generated CRD %s Established", crd.GetName())
	}
	cluster.mapper.Reset()
	return nil
}

// The platform side of the repository: the XRD, both Compositions, the
// Functions and Provider they need, the RBAC for CloudNativePG, the
// on-demand Backup and the restore XR.
func TestCrossplaneManifestsAreAcceptedByTheAPIServer(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "exam-results")
	installXRCRD(t)
	var files []string
	for _, pattern := range []string{"apis/*/*.yaml", "functions.yaml", "prerequisites/*.yaml", "rbac/*.yaml", "operations/*.yaml"} {
		m, _ := filepath.Glob(filepath.Join(crossplaneDir(), pattern))
		files = append(files, m...)
	}
	// The XRD before the XRs (operations/restore-in-cluster.yaml is one).
	sort.SliceStable(files, func(i, j int) bool {
		return strings.HasSuffix(files[i], "definition.yaml") && !strings.HasSuffix(files[j], "definition.yaml")
	})
	applied := 0
	for _, path := range files {
		for _, o := range decodeFile(t, path) {
			var err error
			if o.GetGenerateName() != "" {
				_, err = create(ctx, o, ns) // as its comment says: kubectl create
			} else {
				_, err = apply(ctx, o, ns, "kubectl", false)
			}
			if err != nil {
				t.Errorf("%s: %s rejected: %v", rel(path), ref(o), err)
				continue
			}
			applied++
		}
	}
	t.Logf("%d objects from %d files applied", applied, len(files))
}

func rel(path string) string {
	r, err := filepath.Rel(repoRoot(), path)
	if err != nil {
		return path
	}
	return r
}

// composed renders an example XR with crossplane/tests/crossplane_support.py
// (the compositions' templates run by Helm's engine) and returns the
// composed objects, without the XR's status document it ends with.
func composed(t testing.TB, example string) []*unstructured.Unstructured {
	t.Helper()
	out := decode(t, runPython(t, filepath.Join("crossplane", "tests", "crossplane_support.py"),
		filepath.Join("crossplane", "examples", example)))
	var objs []*unstructured.Unstructured
	for _, o := range out {
		if o.GroupVersionKind().Group != "db.exam-results.io" {
			objs = append(objs, o)
		}
	}
	return objs
}

// Every object the compositions compose for the example claims is accepted:
// CloudNativePG's Cluster and ScheduledBackup with their CEL rules, the
// barman-cloud ObjectStore, the PodMonitor and the connection Secret. The
// provider-aws RDS kinds have no CRD here (see docs/deploy.md).
func TestComposedObjectsAreAcceptedByTheAPIServer(t *testing.T) {
	ctx := context.Background()
	for _, example := range []string{"dev.yaml", "prod.yaml", "prod-aws.yaml"} {
		t.Run(example, func(t *testing.T) {
			xr := decodeFile(t, filepath.Join(crossplaneDir(), "examples", example))[0]
			// Each example in a namespace of its own (they share the XR's name).
			ns := namespace(t, "xp-"+strings.TrimSuffix(example, ".yaml"))
			applied, unserved := 0, 0
			objs := composed(t, example)
			sortForInstall(objs)
			for _, o := range objs {
				if o.GetNamespace() == xr.GetNamespace() {
					o.SetNamespace(ns)
				}
				_, err := apply(ctx, o, ns, "crossplane", false)
				switch {
				case meta.IsNoMatchError(err):
					unserved++
					t.Logf("%s: no CRD for %s here", ref(o), o.GetAPIVersion())
				case err != nil:
					t.Errorf("%s rejected: %v", ref(o), err)
				default:
					applied++
				}
			}
			t.Logf("%d composed objects: %d applied, %d without a CRD here", len(objs), applied, unserved)
		})
	}
}

// The example XRs are accepted by the CRD Crossplane generates from the XRD,
// with its defaults applied.
func TestExampleXRsAreAcceptedByTheGeneratedCRD(t *testing.T) {
	installXRCRD(t)
	ctx := context.Background()
	for _, example := range []string{"dev.yaml", "prod.yaml", "prod-aws.yaml"} {
		t.Run(example, func(t *testing.T) {
			xr := decodeFile(t, filepath.Join(crossplaneDir(), "examples", example))[0]
			ns := namespace(t, "xr-"+strings.TrimSuffix(example, ".yaml"))
			xr.SetNamespace(ns)
			live, err := apply(ctx, xr, ns, "kubectl", false)
			if err != nil {
				t.Fatalf("%s rejected: %v", ref(xr), err)
			}
			instances, _, _ := unstructured.NestedInt64(live.Object, "spec", "instances")
			t.Logf("%s accepted (spec.instances %d)", ref(live), instances)
		})
	}
}

// The XRD's own rules, enforced by the server through the generated CRD:
// its CEL rules (one a transition rule, checked on update) and its bounds.
func TestTheGeneratedCRDRejectsXRsTheXRDForbids(t *testing.T) {
	installXRCRD(t)
	ctx := context.Background()
	ns := namespace(t, "xr-rejections")
	base := decodeFile(t, filepath.Join(crossplaneDir(), "examples", "dev.yaml"))[0]
	base.SetNamespace(ns)
	cases := []struct {
		name    string
		breakIt func(o map[string]any)
		want    string
	}{{
		name:    "fewer than two instances",
		breakIt: func(o map[string]any) { set(o, int64(1), "spec", "instances") },
		want:    "should be greater than or equal to 2",
	}, {
		name:    "backups on without a destination (in-cluster)",
		breakIt: func(o map[string]any) { set(o, map[string]any{"enabled": true}, "spec", "backup") },
		want:    "backup.destinationPath is required when backup.enabled is true",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			broken := base.DeepCopy()
			tc.breakIt(broken.Object)
			err := dryRun(ctx, broken, ns)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want Invalid with %q, got %v", tc.want, err)
			}
			t.Logf("rejected: %v", err)
		})
	}
	t.Run("restore added to an existing XR (transition rule)", func(t *testing.T) {
		if _, err := apply(ctx, base, ns, "kubectl", false); err != nil {
			t.Fatalf("%s rejected: %v", ref(base), err)
		}
		restored := base.DeepCopy()
		set(restored.Object, map[string]any{"fromCluster": "exam-results-db-old"}, "spec", "restore")
		_, err := apply(ctx, restored, ns, "kubectl", false)
		want := "restore can only be set when the PostgresCluster is created"
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), want) {
			t.Fatalf("want Invalid with %q, got %v", want, err)
		}
		t.Logf("rejected: %v", err)
	})
}
