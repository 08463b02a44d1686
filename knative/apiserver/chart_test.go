package apiserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// chartRelease is one `helm template` input: value files (relative to the
// chart) and --set expressions, in that order.
type chartRelease struct {
	files []string
	sets  []string
}

func (r chartRelease) with(sets ...string) chartRelease {
	return chartRelease{files: r.files, sets: append(append([]string{}, r.sets...), sets...)}
}

func chartDir() string { return filepath.Join(repoRoot(), "knative", "exam-results") }

// render runs knative/helm_template.py (Helm's engine) for namespace ns.
func render(t testing.TB, r chartRelease, ns string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{filepath.Join("knative", "helm_template.py"), "-n", ns}
	for _, f := range r.files {
		path := filepath.Join(chartDir(), f)
		if _, err := os.Stat(path); err != nil {
			t.Skipf("the chart has no %s", f)
		}
		args = append(args, "-f", path)
	}
	for _, s := range r.sets {
		args = append(args, "--set", s)
	}
	return decode(t, runPython(t, args...))
}

// cdManaged is a release the CD pipeline manages, every function of
// functions.yaml as the promotion program leaves it: knative/cd_values.py
// builds the --set expressions with .github/promote's own override (image
// digest, BYO revision suffix, tagged traffic; get-result's stable revision at
// 90 % and the candidate at 10 %).
func cdManaged(t testing.TB) chartRelease {
	t.Helper()
	return chartRelease{sets: strings.Fields(runPython(t, filepath.Join("knative", "cd_values.py")))}
}

// The value sets of the chart: each is installed into its own namespace.
func valueSets(t testing.TB) []struct {
	name    string
	release chartRelease
} {
	return []struct {
		name    string
		release chartRelease
	}{
		{"defaults", chartRelease{}},
		{"prod", chartRelease{files: []string{"ci/prod-values.yaml"}}},
		{"minimal", chartRelease{files: []string{"ci/minimal-values.yaml"}}},
		{"cd-managed", cdManaged(t)},
		// The prometheus-operator objects, which a render without a cluster leaves out unless asked.
		{"prod-monitoring", chartRelease{files: []string{"ci/prod-values.yaml"},
			sets: []string{"observability.prometheusRule.enabled=true", "observability.podMonitors.enabled=true"}}},
		// The RDS CA bundle is a file given at install (--set-file); a placeholder PEM here.
		{"rds", chartRelease{files: []string{"ci/rds-values.yaml"},
			sets: []string{"database.tls.caBundle=-----BEGIN CERTIFICATE-----"}}},
	}
}

func TestEveryValueSetIsAcceptedByTheAPIServer(t *testing.T) {
	ctx := context.Background()
	for _, vs := range valueSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			ns := namespace(t, "values-"+vs.name)
			objs := render(t, vs.release, ns)
			rel := &helmRelease{namespace: ns}
			applied, rejected := rel.upgrade(ctx, objs)
			for _, r := range rejected {
				t.Errorf("rejected: %s", r)
			}
			t.Logf("%d objects rendered (%s), %d applied, %d rejected", len(objs), kinds(objs), applied, len(rejected))
		})
	}
}

// The life of a release, each step rendered and applied over the one before.
func upgradeSteps(t testing.TB) []struct {
	name    string
	release chartRelease
} {
	cdManaged := cdManaged(t)
	return []struct {
		name    string
		release chartRelease
	}{
		{"install", chartRelease{}},
		{"tune a target", chartRelease{sets: []string{"functions.getResult.autoscaling.target=80"}}},
		{"CD rollout: candidate at 10%", cdManaged.with("functions.getResult.autoscaling.target=80")},
		{"CD traffic shift to 50/50", cdManaged.with("functions.getResult.autoscaling.target=80",
			"functions.getResult.traffic[0].percent=50", "functions.getResult.traffic[1].percent=50")},
		{"tune again on the CD-managed release", cdManaged.with("functions.getResult.autoscaling.target=90",
			"functions.getResult.traffic[0].percent=50", "functions.getResult.traffic[1].percent=50")},
		{"PgBouncer image change", cdManaged.with("functions.getResult.autoscaling.target=90",
			"functions.getResult.traffic[0].percent=50", "functions.getResult.traffic[1].percent=50",
			"pgbouncer.image.tag=1.25.1", "pgbouncer.image.digest=")},
		{"NetworkPolicies off", cdManaged.with("functions.getResult.autoscaling.target=90",
			"functions.getResult.traffic[0].percent=50", "functions.getResult.traffic[1].percent=50",
			"pgbouncer.image.tag=1.25.1", "pgbouncer.image.digest=", "networkPolicy.enabled=false")},
		{"NetworkPolicies on again", cdManaged.with("functions.getResult.autoscaling.target=90",
			"functions.getResult.traffic[0].percent=50", "functions.getResult.traffic[1].percent=50",
			"pgbouncer.image.tag=1.25.1", "pgbouncer.image.digest=")},
	}
}

func TestUpgradeStepsAreAcceptedByTheAPIServer(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "upgrades")
	rel := &helmRelease{namespace: ns}
	for _, step := range upgradeSteps(t) {
		objs := render(t, step.release, ns)
		before := len(rel.objects)
		applied, rejected := rel.upgrade(ctx, objs)
		for _, r := range rejected {
			t.Errorf("%s: rejected: %s", step.name, r)
		}
		t.Logf("%s: %d objects applied (release objects %d -> %d), %d rejected",
			step.name, applied, before, len(rel.objects), len(rejected))
	}
	// The toggles took effect: NetworkPolicies were removed, then created again.
	policies, err := cluster.kube.NetworkingV1().NetworkPolicies(ns).List(ctx, listAll)
	if err != nil || len(policies.Items) == 0 {
		t.Errorf("NetworkPolicies after turning them on again: %d, %v", len(policies.Items), err)
	}
}

// Which manager owns what. The chart is the one source of every object: CD
// changes a release only through `helm upgrade` (.github/promote), so all
// fields belong to "helm". A change made beside the chart under another
// manager ("cd" here: kubectl apply --server-side --field-manager=cd) is
// never silently undone or silently lost: an apply that would take a field
// another manager owns stops with a conflict naming that manager, and a
// field only the other manager sets survives Helm's next apply.
func TestHelmAndCDFieldManagersDoNotSilentlyOverwriteEachOther(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "field-managers")
	rel := &helmRelease{namespace: ns}
	objs := render(t, cdManaged(t), ns)
	if _, rejected := rel.upgrade(ctx, objs); len(rejected) > 0 {
		t.Fatalf("install: %v", rejected)
	}
	svc := findObject(t, objs, "Service", "get-result")

	// CD tries to move traffic beside the chart: refused, Helm owns spec.traffic.
	shift := partialService(svc, map[string]any{"traffic": []any{
		map[string]any{"latestRevision": true, "percent": int64(100)}}}, nil)
	_, err := apply(ctx, shift, ns, cdManager, false)
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), `conflict with "helm"`) {
		t.Fatalf("CD's traffic change over Helm's: want a conflict with helm, got %v", err)
	}
	t.Logf("CD's unforced traffic change: %v", err)

	// CD records something the chart never sets: Helm's next apply keeps it.
	note := partialService(svc, nil, map[string]any{"exam-results/promoted-by": "cd"})
	if _, err := apply(ctx, note, ns, cdManager, false); err != nil {
		t.Fatalf("CD's annotation: %v", err)
	}
	if _, rejected := rel.upgrade(ctx, objs); len(rejected) > 0 {
		t.Fatalf("helm upgrade after CD's annotation: %v", rejected)
	}
	live := get(t, svc, ns)
	if live.GetAnnotations()["exam-results/promoted-by"] != "cd" {
		t.Errorf("Helm's apply removed CD's annotation: %v", live.GetAnnotations())
	}

	// CD forces the traffic change: Helm's next unforced apply stops with a
	// conflict naming cd instead of quietly putting its own split back.
	if _, err := apply(ctx, shift, ns, cdManager, true); err != nil {
		t.Fatalf("CD's forced traffic change: %v", err)
	}
	_, err = apply(ctx, svc, ns, helmManager, false)
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), `conflict with "cd"`) {
		t.Fatalf("Helm's apply over CD's traffic: want a conflict with cd, got %v", err)
	}
	t.Logf("Helm's unforced apply after CD's forced change: %v", err)
}

func findObject(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s in the render", kind, name)
	return nil
}

// partialService is an apply configuration of svc with only the given spec
// fields and annotations.
func partialService(svc *unstructured.Unstructured, spec, annotations map[string]any) *unstructured.Unstructured {
	md := map[string]any{"name": svc.GetName()}
	if annotations != nil {
		md["annotations"] = annotations
	}
	o := map[string]any{"apiVersion": svc.GetAPIVersion(), "kind": svc.GetKind(), "metadata": md}
	if spec != nil {
		o["spec"] = spec
	}
	return &unstructured.Unstructured{Object: o}
}

func get(t testing.TB, o *unstructured.Unstructured, ns string) *unstructured.Unstructured {
	t.Helper()
	o = o.DeepCopy()
	ri, err := resource(o, ns)
	if err != nil {
		t.Fatal(err)
	}
	live, err := ri.Get(context.Background(), o.GetName(), getOpts)
	if err != nil {
		t.Fatal(err)
	}
	return live
}

// kinds counts the objects by kind, e.g. "ConfigMap 5, Deployment 1".
func kinds(objs []*unstructured.Unstructured) string {
	count := map[string]int{}
	for _, o := range objs {
		count[o.GetKind()]++
	}
	var out []string
	for k, n := range count {
		out = append(out, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
