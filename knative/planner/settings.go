// Package planner is the results-day capacity planner behind `make plan`.
//
// Knative's own autoscaler decides the scale: the KPA decider
// (knative.dev/serving/pkg/autoscaler/scaling) over the metric collector's
// stable and panic windows (pkg/autoscaler/metrics, pkg/autoscaler/aggregation),
// configured from the annotations of the rendered Knative Services through
// Knative's PodAutoscaler and MakeDecider, and from config-autoscaler. The
// planner simulates only what a cluster does around it, on a virtual clock:
// pods Ready after a start delay, queue-proxy's containerConcurrency, the
// activator holding requests at zero scale or below target-burst-capacity,
// requests timing out after timeoutSeconds, PgBouncer's client budget, and a
// database whose throughput is shared by every pod.
//
// # Layout
//
//   - chart.go: render the chart, read Services, PgBouncer and Postgres limits.
//   - capacity.go: the per-pod service model from `make bench`'s capacity sweep.
//   - autoscaler.go: Knative's collector and decider for one revision.
//   - sim.go: the simulation; histogram.go: latency percentiles.
//   - profile.go: traffic profile files (profiles/).
//   - output.go, png.go: table, summary, objective, chart image.
//   - recommend.go: the search for the cheapest setting that meets an objective.
//   - validate.go: one pod of the model against a measured sweep.
package planner

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"knative.dev/serving/pkg/autoscaler/config"
	"sigs.k8s.io/yaml"
)

// DefaultCluster holds the cluster assumptions docs/scaling.md states.
var DefaultCluster = Cluster{
	PodStart: 4 * time.Second,
	Step:     100 * time.Millisecond,
}

// DefaultObjective is the results-day objective docs/scaling.md states.
var DefaultObjective = Objective{P99Ms: 100, PodBudget: 100}

// ServingVersion is the knative.dev/serving module the planner is built
// with: from the binary's build information, else from knative/go.mod
// (test binaries carry no module list).
var ServingVersion = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "knative.dev/serving" {
				return d.Version
			}
		}
	}
	if root, err := RepoRoot(); err == nil {
		if raw, err := os.ReadFile(filepath.Join(root, "knative", "go.mod")); err == nil {
			if m := regexp.MustCompile(`(?m)^\s*knative\.dev/serving (v\S+)`).FindSubmatch(raw); m != nil {
				return string(m[1])
			}
		}
	}
	return "(unknown)"
}()

// ClusterFor returns the default cluster with config-autoscaler built by
// Knative from the given key=value pairs (none: Knative's shipped defaults)
// and the read replicas of the production PostgreSQL example.
func ClusterFor(root string, autoscalerKV []string) (Cluster, error) {
	cl := DefaultCluster
	data := map[string]string{}
	for _, kv := range autoscalerKV {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return cl, fmt.Errorf("config-autoscaler %q: want key=value", kv)
		}
		data[k] = v
	}
	as, err := config.NewConfigFromMap(data)
	if err != nil {
		return cl, fmt.Errorf("config-autoscaler: %w", err)
	}
	cl.Autoscaler = as
	cl.AutoscalerSource = "as shipped"
	if len(data) > 0 {
		cl.AutoscalerSource = strings.Join(autoscalerKV, ",")
	}
	cl.DBReplicas, err = prodReadReplicas(root)
	return cl, err
}

// prodReadReplicas is spec.instances - 1 of crossplane/examples/prod.yaml
// (one primary, the rest serve exam_results_ro).
func prodReadReplicas(root string) (int, error) {
	path := filepath.Join(root, "crossplane", "examples", "prod.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Spec struct {
			Instances int `json:"instances"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Spec.Instances < 2 {
		return 0, fmt.Errorf("%s: spec.instances %d leaves no read replica", path, doc.Spec.Instances)
	}
	return doc.Spec.Instances - 1, nil
}

// CapacityFile resolves -capacity: "" is the committed
// knative/planner/capacity.json (what the tests and docs/scaling.md use),
// "latest" the newest bench-results/*.json that has a capacity sweep.
func CapacityPath(root, flag string) (string, error) {
	switch flag {
	case "":
		return filepath.Join(root, "knative", "planner", "capacity.json"), nil
	case "latest":
		files, _ := filepath.Glob(filepath.Join(root, "bench-results", "*.json"))
		sort.Sort(sort.Reverse(sort.StringSlice(files)))
		for _, f := range files {
			if _, err := LoadCapacity(f); err == nil {
				return f, nil
			}
		}
		return "", fmt.Errorf("no bench-results/*.json with a capacity sweep and point reads: run make bench")
	}
	return flag, nil
}

// Header is the first line of a plan.
func Header(prof *Profile, capacity *Capacity, cl Cluster) string {
	return fmt.Sprintf("plan: profile %s (%s, %.0f s, seed %d); capacity: %s; %d read replica(s); pods Ready %s after the decision; Knative Serving %s autoscaler, config-autoscaler %s",
		prof.Name, prof.Shape, prof.Duration, prof.Seed, capacity.Source, cl.DBReplicas, cl.PodStart, ServingVersion, cl.AutoscalerSource)
}

// Progress returns a progress callback that redraws one line on w.
// Nothing is drawn when w is not a terminal.
func Progress(w *os.File, quiet bool) func(done, total int) {
	if st, err := w.Stat(); quiet || err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	start := time.Now()
	last := time.Time{}
	return func(done, total int) {
		if time.Since(last) < 200*time.Millisecond && done < total {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "\rsimulated %d/%d s (%.0f%%, %.1f s)", done, total, 100*float64(done)/float64(total), time.Since(start).Seconds())
		if done == total {
			fmt.Fprint(w, "\r\033[K")
		}
	}
}
