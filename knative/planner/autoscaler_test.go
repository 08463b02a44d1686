package planner

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"knative.dev/serving/pkg/autoscaler/config"
	"knative.dev/serving/pkg/autoscaler/config/autoscalerconfig"
)

// The scenarios below are Knative's own decider tests
// (knative.dev/serving/pkg/autoscaler/scaling/autoscaler_test.go at
// v0.46.6), replayed through the planner's harness: the revision's
// annotations go through Knative's PodAutoscaler and MakeDecider, the load
// goes through the metric collector's windows as one stat per second, and
// the decision comes from scaling.New. The expected numbers are the ones
// those tests expect.

func testFunction(t *testing.T, ann map[string]string, as *autoscalerconfig.Config) *Function {
	t.Helper()
	cc := int64(0)
	svc := &servingv1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "fn"},
		Spec: servingv1.ServiceSpec{ConfigurationSpec: servingv1.ConfigurationSpec{Template: servingv1.RevisionTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: ann},
			Spec: servingv1.RevisionSpec{ContainerConcurrency: &cc, PodSpec: corev1.PodSpec{
				Containers: []corev1.Container{{Image: "fn"}},
			}},
		}}},
	}
	fn, err := functionFromService(svc, as)
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

func testConfig(t *testing.T, data map[string]string) *autoscalerconfig.Config {
	t.Helper()
	as, err := config.NewConfigFromMap(data)
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// knativeTestAutoscaler is the harness configured like Knative's decider
// tests: max-scale-up-rate and max-scale-down-rate 10, utilization 100 %.
func knativeTestAutoscaler(t *testing.T, ann map[string]string) *Autoscaler {
	t.Helper()
	as := testConfig(t, map[string]string{"max-scale-up-rate": "10", "max-scale-down-rate": "10"})
	ann["autoscaling.knative.dev/target-utilization-percentage"] = "100"
	fn := testFunction(t, ann, as)
	a, err := NewAutoscaler(fn.PA, fn.Decider, as)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// feed records the same revision-wide concurrency every second in [from, to).
func feed(a *Autoscaler, from, to time.Duration, concurrency float64) {
	for s := from; s < to; s += time.Second {
		a.Record(Epoch.Add(s), concurrency, concurrency)
	}
}

// Each step feeds the same revision-wide concurrency every second up to
// `at`, then asks the decider with `ready` pods.
type step struct {
	at          time.Duration
	concurrency float64
	ready       int
	want        int32
}

func TestKnativeDeciderScenarios(t *testing.T) {
	for _, tc := range []struct {
		name   string // and the Knative test it replays
		target string
		steps  []step
	}{{
		// TestAutoscalerStableModeIncreaseWithConcurrencyDefault: 50 in
		// flight at target 10 gives 5 pods, 100 gives 10.
		name: "steady load at target", target: "10",
		steps: []step{{60 * time.Second, 50, 5, 5}, {120 * time.Second, 100, 10, 10}},
	}, {
		// TestAutoscalerPanicThenUnPanicScaleDown: a surge to 1000 over the
		// 6 s panic window takes ten pods to 100; when it drops, the scale
		// holds while in panic (30 s later) and falls after the stable
		// window (61 s), no lower than 10 ready / max-scale-down-rate 10.
		name: "panic entry and exit", target: "10",
		steps: []step{
			{60 * time.Second, 100, 1, 10},
			{66 * time.Second, 1000, 10, 100},
			{96 * time.Second, 1, 10, 100},
			{127 * time.Second, 1, 10, 1},
		},
	}, {
		// TestAutoscalerPanicModeExponentialTrackAndStabilize: target 1,
		// the panic scale follows 6 -> 36 -> 216 (max-scale-up-rate 10).
		name: "panic tracks exponential growth", target: "1",
		steps: []step{{6 * time.Second, 6, 1, 6}, {12 * time.Second, 36, 6, 36}, {18 * time.Second, 216, 36, 216}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			a := knativeTestAutoscaler(t, map[string]string{"autoscaling.knative.dev/target": tc.target})
			from := time.Duration(0)
			for _, s := range tc.steps {
				feed(a, from, s.at, s.concurrency)
				from = s.at
				if got := a.Scale(Epoch.Add(s.at), s.ready).DesiredPodCount; got != s.want {
					t.Errorf("at %v, %g in flight, %d ready: desired %d, want %d", s.at, s.concurrency, s.ready, got, s.want)
				}
			}
		})
	}
}

// TestAutoscalerScaleDownDelay: target 10, 40 in flight gives 4; at zero
// load the 4 holds for the 5 minute scale-down delay, then drops to 0.
func TestScaleDownDelayHoldsThePods(t *testing.T) {
	a := knativeTestAutoscaler(t, map[string]string{"autoscaling.knative.dev/target": "10", "autoscaling.knative.dev/scale-down-delay": "5m"})
	feed(a, 0, 60*time.Second, 40)
	start := 60 * time.Second
	if got := a.Scale(Epoch.Add(start), 4); got.DesiredPodCount != 4 {
		t.Fatalf("40 in flight: desired %d, want 4", got.DesiredPodCount)
	}
	// From here on nothing is in flight. The stable window forgets the load
	// within 60 s, so the undelayed decision falls to 0 by then; the delay
	// window keeps the 4 for 5 minutes after the last decision that wanted it.
	end := start + 60*time.Second + 5*time.Minute + 2*time.Second
	feed(a, start, end+time.Second, 0)
	var dropped time.Duration
	for s := start + 2*time.Second; s <= end; s += 2 * time.Second {
		got := a.Scale(Epoch.Add(s), 4).DesiredPodCount
		if got != 4 && dropped == 0 {
			dropped = s - start
			if got != 0 {
				t.Errorf("%v after the load: desired %d, want 4 or 0", dropped, got)
			}
		}
	}
	if dropped < 5*time.Minute || dropped > 5*time.Minute+60*time.Second {
		t.Errorf("the 4 pods were released %v after the load, want between 5m and 6m", dropped)
	}
}

// Scale from zero through the activator (TestAutoscalerStableModeNoTrafficScaleToZero
// and the multiscaler's poke): a revision at zero with min-scale 0 gets one
// request; the activator holds it and pokes the autoscaler, which asks for
// one pod at once; the request is served when that pod is Ready, nothing is
// refused, and the revision goes back to zero after the stable window and
// the scale-to-zero grace period.
func TestScaleFromZeroThroughTheActivator(t *testing.T) {
	as := testConfig(t, nil)
	fn := testFunction(t, map[string]string{
		"autoscaling.knative.dev/target": "10", "autoscaling.knative.dev/min-scale": "0",
	}, as)
	fn.TimeoutSeconds = 30
	fn.Name = "get-result"
	rel := &Release{Functions: map[string]*Function{"get-result": fn}, Pooler: Pooler{Replicas: 1, MaxClientConn: 100, ReadOnlyServerConns: 10, MaxConnections: 100}}
	fn.Access = "read"
	// initial-scale 1 is Knative's floor without allow-zero-initial-scale:
	// start the revision at zero as after an idle night.
	fn.InitialScale = 0
	capacity := testCapacity(t)
	prof := &Profile{Name: "one", Shape: "steady", Duration: 200, Functions: map[string]float64{"get-result": 1},
		Spikes: []Spike{{At: 10, Requests: 1}}}
	cl := DefaultCluster
	cl.Autoscaler = as
	cl.DBReplicas = 1
	cl.PodCPU = -1
	res, err := Simulate(rel, capacity, prof, cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows := res.Rows
	if rows[9].PodsReady != 0 || rows[9].PodsDesired != 0 {
		t.Fatalf("before the request: %d ready, %d desired, want 0 and 0", rows[9].PodsReady, rows[9].PodsDesired)
	}
	if rows[10].PodsDesired != 1 || !rows[10].ActivatorInPath || rows[10].Queue <= 0 {
		t.Errorf("second of the request: desired %d, activator %v, queue %.2f; want 1, true, > 0",
			rows[10].PodsDesired, rows[10].ActivatorInPath, rows[10].Queue)
	}
	start := int(cl.PodStart.Seconds())
	if rows[10+start].PodsReady != 1 || rows[10+start].Served != 1 {
		t.Errorf("%d s later: %d ready, %.0f served; want 1 and 1", start, rows[10+start].PodsReady, rows[10+start].Served)
	}
	if got, want := rows[10+start].P50Ms, 1000*cl.PodStart.Seconds(); got < want || got > want*1.1 {
		t.Errorf("the request waited %.0f ms, want the pod start %.0f ms", got, want)
	}
	s := res.Summary["get-result"]
	if s.Refused != 0 || s.TimedOut != 0 {
		t.Errorf("refused %.0f, timed out %.0f; want none", s.Refused, s.TimedOut)
	}
	// Back to zero: the stable window (60 s) empties, then the grace period (30 s).
	last := rows[len(rows)-1]
	if last.PodsDesired != 0 || last.PodsReady != 0 {
		t.Errorf("at the end: %d desired, %d ready; want 0", last.PodsDesired, last.PodsReady)
	}
	for _, r := range rows[10 : 10+60] {
		if r.PodsDesired != 1 {
			t.Errorf("t=%d: desired %d, want 1 within the stable window", r.T, r.PodsDesired)
			break
		}
	}
}

func testCapacity(t *testing.T) *Capacity {
	t.Helper()
	c, err := LoadCapacity("capacity.json")
	if err != nil {
		t.Fatal(err)
	}
	return c
}
