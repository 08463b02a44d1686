package planner

import (
	"context"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type fixture struct {
	root     string
	capacity *Capacity
	cluster  Cluster
}

func setup(t *testing.T) fixture {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ClusterFor(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{root: root, capacity: testCapacity(t), cluster: cl}
}

func (f fixture) release(t *testing.T, valuesFiles, sets []string) *Release {
	t.Helper()
	rel, err := LoadRelease(context.Background(), f.root, valuesFiles, sets, f.cluster.Autoscaler)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

func (f fixture) profile(t *testing.T, name string) *Profile {
	t.Helper()
	prof, err := LoadProfile(filepath.Join(f.root, "knative", "planner", "profiles", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return prof
}

func (f fixture) plan(t *testing.T, valuesFiles, sets []string) (*Result, *Release) {
	t.Helper()
	rel := f.release(t, valuesFiles, sets)
	res, err := Simulate(rel, f.capacity, f.profile(t, "results-day"), f.cluster, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res, rel
}

// The objective docs/scaling.md states, on the default results-day profile,
// with the chart's values and the results-day values file.
func TestShippedValuesSurviveResultsDay(t *testing.T) {
	f := setup(t)
	res, rel := f.plan(t, []string{filepath.Join(f.root, "knative", "planner", "results-day-values.yaml")}, nil)
	if fails := DefaultObjective.Check(res); len(fails) > 0 {
		t.Fatalf("the shipped results-day values miss the objective (%s): %s", DefaultObjective, strings.Join(fails, "; "))
	}
	s := res.Summary["get-result"]
	if s.Requests < 5e6 {
		t.Errorf("the default profile sent %.0f requests, want several million", s.Requests)
	}
	if got := rel.Functions["get-result"].MinScale; got != 6 {
		t.Errorf("rendered get-result min-scale %d, want the results-day file's 6", got)
	}
}

// Deliberately bad values fail the same check, so the test above can fail.
func TestBadValuesFailResultsDay(t *testing.T) {
	f := setup(t)
	overlay := filepath.Join(f.root, "knative", "planner", "results-day-values.yaml")
	for _, tc := range []struct {
		name   string
		values []string
		sets   []string
		want   string
	}{
		{"the year-round values (get-result min-scale 2, target 16) without the results-day file", nil, nil, "get-result p99"},
		{"get-result min-scale lowered to 4", []string{overlay},
			[]string{"functions.getResult.autoscaling.minScale=4", "functions.getResult.autoscaling.initialScale=4"}, "get-result"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := f.plan(t, tc.values, tc.sets)
			fails := DefaultObjective.Check(res)
			if len(fails) == 0 || !strings.Contains(strings.Join(fails, ";"), tc.want) {
				t.Errorf("objective misses %q, want one about %q", fails, tc.want)
			}
		})
	}
}

func TestSameSeedSamePlanOtherSeedOtherPlan(t *testing.T) {
	f := setup(t)
	rel := f.release(t, nil, nil)
	prof := f.profile(t, "step")
	a, _ := Simulate(rel, f.capacity, prof, f.cluster, nil)
	b, _ := Simulate(rel, f.capacity, prof, f.cluster, nil)
	if !reflect.DeepEqual(a.Rows, b.Rows) {
		t.Error("two runs with the same seed differ")
	}
	if err := prof.Set("seed=2"); err != nil {
		t.Fatal(err)
	}
	c, _ := Simulate(rel, f.capacity, prof, f.cluster, nil)
	if reflect.DeepEqual(a.Rows, c.Rows) {
		t.Error("another seed gives the same arrivals")
	}
}

func TestEveryProfileFileLoads(t *testing.T) {
	files, _ := filepath.Glob("profiles/*.yaml")
	if len(files) < 3 {
		t.Fatalf("profiles: %v, want results-day, steady and step", files)
	}
	for _, f := range files {
		if _, err := LoadProfile(f); err != nil {
			t.Error(err)
		}
	}
}

func TestResultsDayRampsToThePeakAndDecays(t *testing.T) {
	p, err := LoadProfile("profiles/results-day.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.RateAt(0); got != p.Base {
		t.Errorf("before publication %g/s, want base %g", got, p.Base)
	}
	every := p.Bursts.Every
	p.Bursts.Every = 0
	if got := p.RateAt(p.PublishAt + p.RampSeconds); got != p.Peak {
		t.Errorf("at the end of the ramp %g/s, want peak %g", got, p.Peak)
	}
	if got := p.RateAt(p.PublishAt + p.RampSeconds + p.TailHalfLife); math.Abs(got-p.Peak/2) > 1e-6 {
		t.Errorf("one half-life after the peak %g/s, want %g", got, p.Peak/2)
	}
	p.Bursts.Every = every
	burst := p.PublishAt + p.Bursts.Every + 1
	if got, calm := p.RateAt(burst), p.RateAt(burst-2); got < calm*p.Bursts.Factor*0.99 {
		t.Errorf("in a refresh storm %g/s, want %g x %g", got, p.Bursts.Factor, calm)
	}
	if err := p.Set("peak=-1"); err == nil {
		t.Error("a negative peak is accepted")
	}
}

// The per-pod model follows the sweep it was built from, is monotone, and
// a CPU request caps it at the measured CPU per request.
func TestPodModelFollowsTheSweep(t *testing.T) {
	c := testCapacity(t)
	m, err := c.Model("get-result", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Sweeps["get-result"] {
		if got := m.Throughput(p.Concurrency); got < p.RPS {
			t.Errorf("throughput at %g: %g, want at least the measured %g", p.Concurrency, got, p.RPS)
		}
		if p50, _ := m.Latency(p.Concurrency); p50 != p.P50Ms {
			t.Errorf("p50 at %g: %g, want %g", p.Concurrency, p50, p.P50Ms)
		}
	}
	prev := 0.0
	for x := 0.1; x < 600; x *= 1.3 {
		if got := m.Throughput(x); got < prev {
			t.Errorf("throughput falls from %g to %g at %g in flight", prev, got, x)
		} else {
			prev = got
		}
		if c := m.ConcurrencyFor(m.Throughput(x), 1e6); x <= m.MaxConcurrency() && math.Abs(m.Throughput(c)-m.Throughput(x)) > 1e-3*m.Throughput(x) {
			t.Errorf("Throughput(ConcurrencyFor(Throughput(%g))) = %g", x, m.Throughput(c))
		}
	}
	capped, err := c.Model("get-result", 0.1)
	if err != nil {
		t.Fatal(err)
	}
	p16 := c.Sweeps["get-result"][4]
	if want := 0.1 * p16.RPS / p16.FunctionCPU; math.Abs(capped.Throughput(16)-want) > 1 {
		t.Errorf("0.1 cores at 16 in flight: %g/s, want %g", capped.Throughput(16), want)
	}
	if _, err := c.Model("delete-result", 0); err != nil {
		t.Errorf("delete-result takes update-result's curve: %v", err)
	}
}

// The hook `make bench` calls (`make plan-validate`): one pod of the model
// against a measured sweep, within the tolerance.
func TestValidatePodAgainstASweep(t *testing.T) {
	f := setup(t)
	rel := f.release(t, nil, nil)
	rep, err := ValidatePod(f.capacity, f.capacity, rel, f.cluster, DefaultTolerance)
	if err != nil || !strings.Contains(rep, "within 25%") {
		t.Errorf("the sweep the model is built from: %v\n%s", err, rep)
	}
	slow := *f.capacity
	slow.Sweeps = map[string][]SweepPoint{}
	for _, p := range f.capacity.Sweeps["get-result"] {
		p.RPS *= 0.6
		slow.Sweeps["get-result"] = append(slow.Sweeps["get-result"], p)
	}
	if _, err := ValidatePod(f.capacity, &slow, rel, f.cluster, DefaultTolerance); err == nil {
		t.Error("a sweep 40 % slower than the model passes")
	}
}

// The --set line the recommendation prints renders into exactly the
// annotations it simulated.
func TestSetLineRendersTheSimulatedAnnotations(t *testing.T) {
	f := setup(t)
	rel := f.release(t, nil, nil)
	k := Knobs{Target: 12, MinScale: 3, InitialScale: 4, MaxScale: 40, TBC: f.cluster.Autoscaler.TargetBurstCapacity}
	key, err := ValuesKey(f.root, "get-result")
	if err != nil {
		t.Fatal(err)
	}
	got := f.release(t, nil, SetLine(key, k))
	want, err := WithKnobs(rel.Functions["get-result"], k, f.cluster.Autoscaler)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Functions["get-result"].Annotations, want.Annotations) {
		t.Errorf("rendered %v, simulated %v", got.Functions["get-result"].Annotations, want.Annotations)
	}
	if got.Functions["get-result"].Decider.Spec != want.Decider.Spec {
		t.Errorf("decider from the render %+v, simulated %+v", got.Functions["get-result"].Decider.Spec, want.Decider.Spec)
	}
}

// Past what the database serves (pgbench's limit per replica x replicas),
// more pods add no throughput: requests queue, time out, and the pods'
// in-flight count (which the autoscaler reads) climbs to max-scale.
func TestDatabaseSaturationShowsAsQueueing(t *testing.T) {
	f := setup(t)
	rel := f.release(t, nil, nil)
	dbCap := f.capacity.DBInstanceRPS * float64(f.cluster.DBReplicas)
	prof := &Profile{Name: "over", Shape: "steady", Duration: 300, Seed: 1,
		Functions: map[string]float64{"get-result": 1}, Rate: 1.5 * dbCap}
	cl := f.cluster
	cl.PodCPU = -1 // pods as fast as measured: only the database limits
	res, err := Simulate(rel, f.capacity, prof, cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := res.Rows[len(res.Rows)-1]
	if math.Abs(last.Served-dbCap) > 0.05*dbCap {
		t.Errorf("served %.0f/s at the end, want the database's %.0f/s", last.Served, dbCap)
	}
	if last.Queue < 1000 || last.DBUtilization < 0.99 {
		t.Errorf("queue %.0f, database at %.0f%%; want a long queue at 100%%", last.Queue, 100*last.DBUtilization)
	}
	s := res.Summary["get-result"]
	if s.MaxPodsDesired != int(rel.Functions["get-result"].MaxScale) {
		t.Errorf("pods desired max %d, want max-scale %d", s.MaxPodsDesired, rel.Functions["get-result"].MaxScale)
	}
	if s.TimedOut+s.Refused == 0 {
		t.Error("nothing timed out or refused at 150 % of the database's capacity")
	}
}
