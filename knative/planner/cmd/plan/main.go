// Command plan is the results-day capacity planner (`make plan`): it renders
// the chart, runs a traffic profile through Knative's own autoscaler on a
// virtual clock with pods that serve like the benchmarked functions, and
// writes a per-second table, a summary and a chart image.
//
//	go run ./planner/cmd/plan [-profile FILE] [-set a.b=c ...] [-f values.yaml ...]
//	                          [-p peak=9000 ...] [-recommend] [-validate BENCH_JSON]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"exam-results/knative/planner"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "plan:", err)
		os.Exit(1)
	}
}

func run() error {
	// `make plan` runs this from knative/ and passes the directory make was
	// started in, so that paths in PLAN_ARGS are relative to it.
	if dir := os.Getenv("PLAN_CWD"); dir != "" {
		if err := os.Chdir(dir); err != nil {
			return err
		}
	}
	root, err := planner.RepoRoot()
	if err != nil {
		return err
	}
	here := filepath.Join(root, "knative", "planner")
	var sets, values, params, asConfig multi
	profilePath := flag.String("profile", filepath.Join(here, "profiles", "results-day.yaml"), "traffic profile file")
	flag.Var(&sets, "set", "Helm --set expression for the chart (repeatable)")
	flag.Var(&values, "f", "values file for the chart (repeatable)")
	flag.Var(&params, "p", "profile parameter override name=value, e.g. peak=9000 or seed=7 (repeatable)")
	flag.Var(&asConfig, "autoscaler", "config-autoscaler key=value of the cluster, e.g. stable-window=120s (repeatable; default: Knative's shipped defaults)")
	capacityPath := flag.String("capacity", "", "capacity sweep: a `make bench` results JSON, or latest for the newest bench-results/*.json (default: the committed knative/planner/capacity.json)")
	writeCapacity := flag.String("write-capacity", "", "write the sweep and point-read fields of -capacity to this file (to refresh capacity.json from a make bench run) and exit")
	out := flag.String("out", filepath.Join(here, "out"), "directory for plan.csv, plan.json and plan.png")
	png := flag.String("png", "", "chart image path (default OUT/plan.png)")
	podStart := flag.Duration("pod-start", planner.DefaultCluster.PodStart, "decision to Ready for a new pod")
	dbReplicas := flag.Int("db-replicas", 0, "PostgreSQL read replicas (default: instances - 1 of crossplane/examples/prod.yaml)")
	podCPU := flag.Float64("pod-cpu", 0, "cores a pod serves with (0: the chart's resources.requests.cpu; -1: uncapped, as the sweep measured)")
	p99 := flag.Float64("objective-p99", planner.DefaultObjective.P99Ms, "objective: p99 (ms) in every minute")
	budget := flag.Int("pod-budget", planner.DefaultObjective.PodBudget, "objective: most pods of one function at once")
	recommend := flag.Bool("recommend", false, "search target, min/initial/max scale and target-burst-capacity for the cheapest setting that meets the objective")
	recFn := flag.String("recommend-function", "get-result", "the function whose knobs -recommend searches")
	validate := flag.String("validate", "", "compare one pod of the model with the capacity sweep in this `make bench` results JSON and exit")
	tolerance := flag.Float64("tolerance", planner.DefaultTolerance, "-validate: largest relative throughput difference accepted")
	quiet := flag.Bool("q", false, "no progress line")
	flag.Parse()

	capFile, err := planner.CapacityPath(root, *capacityPath)
	if err != nil {
		return err
	}
	if *writeCapacity != "" {
		return planner.ExtractCapacity(capFile, *writeCapacity)
	}
	capacity, err := planner.LoadCapacity(capFile)
	if err != nil {
		return err
	}
	cl, err := planner.ClusterFor(root, asConfig)
	if err != nil {
		return err
	}
	cl.PodStart = *podStart
	cl.PodCPU = *podCPU
	if *dbReplicas > 0 {
		cl.DBReplicas = *dbReplicas
	}

	ctx := context.Background()
	rel, err := planner.LoadRelease(ctx, root, values, sets, cl.Autoscaler)
	if err != nil {
		return err
	}

	if *validate != "" {
		measured, err := planner.LoadCapacity(*validate)
		if err != nil {
			return err
		}
		rep, err := planner.ValidatePod(capacity, measured, rel, cl, *tolerance)
		fmt.Print(rep)
		return err
	}

	prof, err := planner.LoadProfile(*profilePath)
	if err != nil {
		return err
	}
	for _, p := range params {
		if err := prof.Set(p); err != nil {
			return err
		}
	}
	obj := planner.Objective{P99Ms: *p99, PodBudget: *budget}

	fmt.Println(planner.Header(prof, capacity, cl))
	start := time.Now()
	progress := planner.Progress(os.Stderr, *quiet)
	res, err := planner.Simulate(rel, capacity, prof, cl, progress)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	settings := map[string]any{"sets": []string(sets), "values": []string(values), "capacity": capacity.Source,
		"db_replicas": cl.DBReplicas, "pod_start": cl.PodStart.String(), "pod_cpu": cl.PodCPU}
	if err := planner.WriteCSV(filepath.Join(*out, "plan.csv"), res.Rows); err != nil {
		return err
	}
	if err := planner.WriteJSON(filepath.Join(*out, "plan.json"), res, settings); err != nil {
		return err
	}
	pngPath := *png
	if pngPath == "" {
		pngPath = filepath.Join(*out, "plan.png")
	}
	if err := planner.WritePNG(pngPath, res, obj); err != nil {
		return err
	}
	planner.PrintSummary(os.Stdout, res, rel, obj)
	fmt.Printf("wrote %s, %s, %s (simulated in %.1f s)\n", rel2(root, filepath.Join(*out, "plan.csv")),
		rel2(root, filepath.Join(*out, "plan.json")), rel2(root, pngPath), time.Since(start).Seconds())

	if *recommend {
		rec, err := planner.Recommend(ctx, root, values, sets, rel, capacity, prof, cl, obj, *recFn, progress)
		if err != nil {
			return err
		}
		fmt.Print(rec)
	}
	return nil
}

func rel2(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}
