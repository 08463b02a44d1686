package apiserver

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// Broken objects, each made from an object the repository renders that the
// server accepts as it is, with one rule broken: the server refuses it with
// its own message. This is what shows the server is checking.
func TestTheAPIServerRejectsBrokenObjects(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "rejections")
	chart := render(t, chartRelease{}, ns)
	pgbouncer := findObject(t, chart, "Deployment", "pgbouncer")
	cronJob := partitionUpkeepCronJob(t, chart)
	var cnpg *unstructured.Unstructured
	for _, o := range composed(t, "dev.yaml") {
		if o.GetKind() == "Cluster" {
			cnpg = o
			cnpg.SetNamespace(ns)
		}
	}
	if cnpg == nil {
		t.Fatal("the in-cluster composition composed no CloudNativePG Cluster")
	}

	cases := []struct {
		name    string
		base    *unstructured.Unstructured
		breakIt func(o map[string]any)
		want    string // in the server's message
	}{{
		name: "Deployment whose selector does not match its template's labels",
		base: pgbouncer,
		breakIt: func(o map[string]any) {
			set(o, map[string]any{"app.kubernetes.io/component": "something-else"}, "spec", "selector", "matchLabels")
		},
		want: "`selector` does not match template `labels`",
	}, {
		name: "container port name over 15 characters",
		base: pgbouncer,
		breakIt: func(o map[string]any) {
			port := get0(o, "spec", "template", "spec", "containers", "ports")
			port["name"] = "pgbouncer-clients"
		},
		want: "must be no more than 15 characters",
	}, {
		name: "CronJob with a schedule that does not parse",
		base: cronJob,
		breakIt: func(o map[string]any) {
			set(o, "61 3 * * *", "spec", "schedule")
		},
		want: "spec.schedule",
	}, {
		name: "CloudNativePG Cluster with both imageName and imageCatalogRef (CEL rule)",
		base: cnpg,
		breakIt: func(o map[string]any) {
			set(o, "ghcr.io/cloudnative-pg/postgresql:17.5", "spec", "imageName")
			set(o, map[string]any{"apiGroup": "postgresql.cnpg.io", "kind": "ClusterImageCatalog", "name": "postgresql", "major": int64(17)},
				"spec", "imageCatalogRef")
		},
		want: "imageName and imageCatalogRef are mutually exclusive",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// As rendered: accepted (a dry run, so each case starts clean).
			if err := dryRun(ctx, tc.base, ns); err != nil {
				t.Fatalf("%s as rendered is rejected: %v", ref(tc.base), err)
			}
			broken := tc.base.DeepCopy()
			tc.breakIt(broken.Object)
			err := dryRun(ctx, broken, ns)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want Invalid with %q, got %v", tc.want, err)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

// dryRun is a server-side apply that the server validates in full and does
// not store.
func dryRun(ctx context.Context, o *unstructured.Unstructured, ns string) error {
	o = o.DeepCopy()
	ri, err := resource(o, ns)
	if err != nil {
		return err
	}
	data, err := o.MarshalJSON()
	if err != nil {
		return err
	}
	force := true
	_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: helmManager, Force: &force, DryRun: []string{metav1.DryRunAll}})
	return err
}

// partitionUpkeepCronJob is the chart's CronJob, or the standalone manifest
// where the chart has none.
func partitionUpkeepCronJob(t testing.TB, chart []*unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	for _, o := range chart {
		if o.GetKind() == "CronJob" {
			return o
		}
	}
	for _, o := range decodeFile(t, filepath.Join(repoRoot(), "knative", "partition-upkeep-cronjob.yaml")) {
		if o.GetKind() == "CronJob" {
			return o
		}
	}
	t.Fatal("no CronJob in the chart or knative/partition-upkeep-cronjob.yaml")
	return nil
}

// set sets a nested field, creating the maps on the way.
func set(o map[string]any, value any, path ...string) {
	for _, p := range path[:len(path)-1] {
		next, ok := o[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			o[p] = next
		}
		o = next
	}
	o[path[len(path)-1]] = value
}

// get0 walks a path taking the first element of every list on the way.
func get0(o map[string]any, path ...string) map[string]any {
	var cur any = o
	for _, p := range path {
		cur = cur.(map[string]any)[p]
		if l, ok := cur.([]any); ok {
			cur = l[0]
		}
	}
	return cur.(map[string]any)
}

// An upgrade that changes an immutable field is refused: the server keeps
// the Deployment's selector (a chart change to its labels would need the
// Deployment deleted first).
func TestTheAPIServerRejectsAnUpgradeThatChangesAnImmutableField(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "immutable")
	pgbouncer := findObject(t, render(t, chartRelease{}, ns), "Deployment", "pgbouncer")
	if _, err := apply(ctx, pgbouncer, ns, helmManager, false); err != nil {
		t.Fatalf("install: %v", err)
	}
	changed := pgbouncer.DeepCopy()
	set(changed.Object, "pooler-v2", "spec", "selector", "matchLabels", "app.kubernetes.io/component")
	set(changed.Object, "pooler-v2", "spec", "template", "metadata", "labels", "app.kubernetes.io/component")
	_, err := apply(ctx, changed, ns, helmManager, false)
	want := "field is immutable"
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("want Invalid with %q, got %v", want, err)
	}
	t.Logf("rejected: %v", err)
}
