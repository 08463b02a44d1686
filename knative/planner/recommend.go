package planner

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"knative.dev/serving/pkg/apis/autoscaling"
	"knative.dev/serving/pkg/autoscaler/config/autoscalerconfig"
	kparesources "knative.dev/serving/pkg/reconciler/autoscaling/kpa/resources"
	"sigs.k8s.io/yaml"
)

// Knobs are the settings the recommendation searches.
type Knobs struct {
	Target       int
	MinScale     int
	InitialScale int
	MaxScale     int
	// TargetBurstCapacity; the chart has no value for it, so a setting other
	// than the cluster's default is printed as an annotation to add.
	TBC float64
}

// knobValues maps a knob to the chart value that renders its annotation;
// Recommend renders the --set line it prints and checks that the chart turns
// it into exactly the annotations that were simulated.
var knobValues = []struct {
	value, annotation string
	get               func(Knobs) string
}{
	{"autoscaling.target", autoscaling.TargetAnnotationKey, func(k Knobs) string { return strconv.Itoa(k.Target) }},
	{"autoscaling.minScale", autoscaling.MinScaleAnnotationKey, func(k Knobs) string { return strconv.Itoa(k.MinScale) }},
	{"autoscaling.initialScale", autoscaling.InitialScaleAnnotationKey, func(k Knobs) string { return strconv.Itoa(k.InitialScale) }},
	{"autoscaling.maxScale", autoscaling.MaxScaleAnnotationKey, func(k Knobs) string { return strconv.Itoa(k.MaxScale) }},
}

// WithKnobs returns a copy of a function with the knobs' annotations, its
// PodAutoscaler and Decider rebuilt by Knative's code.
func WithKnobs(fn *Function, k Knobs, as *autoscalerconfig.Config) (*Function, error) {
	ann := maps.Clone(fn.Annotations)
	for _, kv := range knobValues {
		ann[kv.annotation] = kv.get(k)
	}
	if k.TBC != as.TargetBurstCapacity {
		ann[autoscaling.TargetBurstCapacityKey] = strconv.FormatFloat(k.TBC, 'f', -1, 64)
	} else {
		delete(ann, autoscaling.TargetBurstCapacityKey)
	}
	out := *fn
	out.Annotations = ann
	pa := fn.PA.DeepCopy()
	pa.Annotations = ann
	if err := pa.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%s: Knative refuses %+v: %v", fn.Name, k, err)
	}
	out.PA = pa
	out.Decider = kparesources.MakeDecider(pa, as)
	out.MinScale, out.MaxScale = pa.ScaleBounds(as)
	out.InitialScale = kparesources.GetInitialScale(as, pa)
	return &out, nil
}

// KnobsOf reads the current knobs of a function.
func KnobsOf(fn *Function) Knobs {
	atoi := func(k string) int { n, _ := strconv.Atoi(fn.Annotations[k]); return n }
	return Knobs{
		Target: atoi(autoscaling.TargetAnnotationKey), MinScale: atoi(autoscaling.MinScaleAnnotationKey),
		InitialScale: atoi(autoscaling.InitialScaleAnnotationKey), MaxScale: atoi(autoscaling.MaxScaleAnnotationKey),
		TBC: fn.Decider.Spec.TargetBurstCapacity,
	}
}

// ValuesKey returns the chart's values key of a function from the one list
// of the functions (knative/exam-results/functions.yaml).
func ValuesKey(root, function string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(root, "knative", "exam-results", "functions.yaml"))
	if err != nil {
		return "", err
	}
	var list struct {
		Functions []struct{ Name, Key string } `json:"functions"`
	}
	if err := yaml.Unmarshal(raw, &list); err != nil {
		return "", err
	}
	for _, f := range list.Functions {
		if f.Name == function {
			return f.Key, nil
		}
	}
	return "", fmt.Errorf("functions.yaml has no function %s", function)
}

// SetLine is the chart's --set expressions for the knobs of one function.
func SetLine(key string, k Knobs) []string {
	var out []string
	for _, kv := range knobValues {
		out = append(out, fmt.Sprintf("functions.%s.%s=%s", key, kv.value, kv.get(k)))
	}
	return out
}

type candidate struct {
	k    Knobs
	res  *Result
	fail []string
	cost float64
}

// Evaluate simulates the profile with one function's knobs replaced.
func Evaluate(rel *Release, capacity *Capacity, prof *Profile, cl Cluster, obj Objective, function string, k Knobs) (*Result, []string, error) {
	fn, err := WithKnobs(rel.Functions[function], k, cl.Autoscaler)
	if err != nil {
		return nil, nil, err
	}
	r2 := *rel
	r2.Functions = maps.Clone(rel.Functions)
	r2.Functions[function] = fn
	res, err := Simulate(&r2, capacity, prof, cl, nil)
	if err != nil {
		return nil, nil, err
	}
	return res, obj.Check(res), nil
}

// Recommend searches target, min-scale (= initial-scale), target-burst-capacity
// and then max-scale of one function for the setting with the fewest
// pod-seconds that meets the objective, prints it as a --set line and checks
// that line against a render of the chart.
func Recommend(ctx context.Context, root string, valuesFiles, sets []string, rel *Release, capacity *Capacity,
	prof *Profile, cl Cluster, obj Objective, function string, progress func(int, int)) (string, error) {
	fn, ok := rel.Functions[function]
	if !ok {
		return "", fmt.Errorf("no function %s in the render", function)
	}
	if _, ok := prof.Functions[function]; !ok {
		return "", fmt.Errorf("profile %s sends nothing to %s", prof.Name, function)
	}
	current := KnobsOf(fn)
	budget := obj.PodBudget
	if budget == 0 {
		budget = int(math.Max(float64(current.MaxScale), 100))
	}
	var grid []Knobs
	for _, target := range []int{4, 8, 12, 16, 24, 32, 48, 64, 96, 128} {
		if fn.ContainerConcurrency > 0 && int64(target) > fn.ContainerConcurrency {
			continue
		}
		for _, minScale := range []int{0, 1, 2, 3, 4, 6, 8} {
			for _, tbc := range []float64{cl.Autoscaler.TargetBurstCapacity, -1} {
				grid = append(grid, Knobs{Target: target, MinScale: minScale, InitialScale: max(minScale, 1),
					MaxScale: budget, TBC: tbc})
			}
		}
	}
	cands := make([]candidate, len(grid))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	done := 0
	sem := make(chan struct{}, 2)
	for i, k := range grid {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res, fail, err := Evaluate(rel, capacity, prof, cl, obj, function, k)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if res != nil {
				cands[i] = candidate{k: k, res: res, fail: fail, cost: res.Summary[function].PodSeconds}
			}
			done++
			if progress != nil {
				progress(done, len(grid))
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return "", firstErr
	}
	// Cheapest first (pod-seconds, to the pod-minute); among equals the
	// fewest changes: the current target-burst-capacity, then the target
	// closest to the current one.
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if math.Abs(a.cost-b.cost) >= 60 {
			return a.cost < b.cost
		}
		if (a.k.TBC == current.TBC) != (b.k.TBC == current.TBC) {
			return a.k.TBC == current.TBC
		}
		da, db := math.Abs(float64(a.k.Target-current.Target)), math.Abs(float64(b.k.Target-current.Target))
		if da != db {
			return da < db
		}
		return a.cost < b.cost
	})
	var best *candidate
	for i := range cands {
		if len(cands[i].fail) == 0 {
			best = &cands[i]
			break
		}
	}
	var b strings.Builder
	met := 0
	for _, c := range cands {
		if len(c.fail) == 0 {
			met++
		}
	}
	fmt.Fprintf(&b, "recommendation for %s (%s): %d of %d settings meet the objective\n", function, obj, met, len(cands))
	if best == nil {
		fmt.Fprintf(&b, "none meets it; raise the pod budget, add database replicas or relax the objective\n")
		return b.String(), nil
	}
	// max-scale: the smallest cap above what the plan used that still meets it.
	k := best.k
	used := best.res.Summary[function].MaxPodsDesired
	// Headroom first: twice what this day needed, for a bigger day.
	for _, m := range []int{used * 2, int(math.Ceil(float64(used) * 1.5)), int(math.Ceil(float64(used) * 1.25)), budget} {
		if m < max(k.MinScale, 1) || m > budget {
			continue
		}
		try := k
		try.MaxScale = m
		res, fail, err := Evaluate(rel, capacity, prof, cl, obj, function, try)
		if err != nil {
			return "", err
		}
		if len(fail) == 0 {
			k, best.res = try, res
			break
		}
	}
	s := best.res.Summary[function]
	key, err := ValuesKey(root, function)
	if err != nil {
		return "", err
	}
	line := SetLine(key, k)
	fmt.Fprintf(&b, "cheapest: target %d, min-scale %d, initial-scale %d, max-scale %d (the plan needed %d pods), target-burst-capacity %g: %.1f pod-hours, pods max %d, worst minute p99 %.1f ms\n",
		k.Target, k.MinScale, k.InitialScale, k.MaxScale, used, k.TBC, s.PodSeconds/3600, s.MaxPodsReady, s.WorstMinuteP99Ms)
	cur := KnobsOf(fn)
	if _, fail, err := Evaluate(rel, capacity, prof, cl, obj, function, cur); err == nil {
		verdict := "meets the objective"
		if len(fail) > 0 {
			verdict = "misses it: " + strings.Join(fail, "; ")
		}
		fmt.Fprintf(&b, "current: target %d, min-scale %d, initial-scale %d, max-scale %d: %s\n",
			cur.Target, cur.MinScale, cur.InitialScale, cur.MaxScale, verdict)
	}
	fmt.Fprintf(&b, "  --set %s\n", strings.Join(line, ","))
	if k.TBC != cl.Autoscaler.TargetBurstCapacity {
		fmt.Fprintf(&b, "  and the annotation %s: %q on the revision template (the chart has no value for it)\n",
			autoscaling.TargetBurstCapacityKey, strconv.FormatFloat(k.TBC, 'f', -1, 64))
	}
	// The chart must render the --set line into the simulated annotations.
	check, err := LoadRelease(ctx, root, valuesFiles, append(append([]string{}, sets...), line...), cl.Autoscaler)
	if err != nil {
		return "", fmt.Errorf("rendering the recommendation: %w", err)
	}
	want, _ := WithKnobs(fn, k, cl.Autoscaler)
	for _, kv := range knobValues {
		if got := check.Functions[function].Annotations[kv.annotation]; got != want.Annotations[kv.annotation] {
			return "", fmt.Errorf("--set %s renders %s=%q, the plan simulated %q", key, kv.annotation, got, want.Annotations[kv.annotation])
		}
	}
	return b.String(), nil
}
