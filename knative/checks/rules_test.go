package checks

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "knative.dev/serving/pkg/apis/serving/v1"
)

// Each value the chart refuses at render time is one Knative refuses: the
// chart's message names the value, and the same value written into a
// rendered Service directly (bypassing the chart) fails Knative's validation.
func TestTheChartRefusesWhatKnativeRefuses(t *testing.T) {
	ctx := knativeContext(t, nil)
	cases := []struct {
		name       string
		sets       []string
		chartSays  string
		bypass     func(*v1.Service)
		knativeSay string
	}{{
		name: "a traffic tag that is not a DNS-1035 label",
		sets: []string{"functions.getResult.traffic[0].latestRevision=true",
			"functions.getResult.traffic[0].percent=100", "functions.getResult.traffic[0].tag=7f3e2a1"},
		chartSays: `functions.getResult.traffic[0].tag "7f3e2a1" is not a DNS-1035 label`,
		bypass: func(s *v1.Service) {
			s.Spec.Traffic = []v1.TrafficTarget{{LatestRevision: ptr(true), Percent: ptr(int64(100)), Tag: "7f3e2a1"}}
		},
		knativeSay: "not a DNS 1035 label",
	}, {
		name:       "scaleDownDelay over 1h",
		sets:       []string{"functions.getResult.autoscaling.scaleDownDelay=1h0m1s"},
		chartSays:  `functions.getResult.autoscaling.scaleDownDelay "1h0m1s" is above Knative's maximum of 1h`,
		bypass:     annotate("autoscaling.knative.dev/scale-down-delay", "1h0m1s"),
		knativeSay: "autoscaling.knative.dev/scale-down-delay",
	}, {
		name:       "initialScale 0 without the cluster's allow-zero-initial-scale",
		sets:       []string{"functions.updateResult.autoscaling.initialScale=0"},
		chartSays:  "functions.updateResult.autoscaling.initialScale 0 is refused by Knative unless",
		bypass:     annotate("autoscaling.knative.dev/initial-scale", "0"),
		knativeSay: "initial-scale=0 not allowed by cluster",
	}, {
		name:       "a stable window under 6s",
		sets:       []string{"functions.getResult.autoscaling.window=5s"},
		chartSays:  `functions.getResult.autoscaling.window "5s" is outside Knative's bounds of 6s to 1h`,
		bypass:     annotate("autoscaling.knative.dev/window", "5s"),
		knativeSay: "autoscaling.knative.dev/window",
	}, {
		name:       "a stable window over 1h",
		sets:       []string{"functions.getResult.autoscaling.window=61m"},
		chartSays:  `functions.getResult.autoscaling.window "61m" is outside Knative's bounds`,
		bypass:     annotate("autoscaling.knative.dev/window", "61m"),
		knativeSay: "autoscaling.knative.dev/window",
	}, {
		name:       "activation-scale below min-scale",
		sets:       []string{"functions.getResult.autoscaling.activationScale=2", "functions.getResult.autoscaling.minScale=3", "functions.getResult.autoscaling.initialScale=3"},
		chartSays:  "functions.getResult.autoscaling.activationScale 2 is below minScale 3",
		bypass:     annotate("autoscaling.knative.dev/activation-scale", "2", "autoscaling.knative.dev/min-scale", "3"),
		knativeSay: "min-scale=3 is greater than activation-scale=2",
	}, {
		name:       "activation-scale above max-scale",
		sets:       []string{"functions.createResult.autoscaling.activationScale=6"},
		chartSays:  "functions.createResult.autoscaling.activationScale 6 is above maxScale 5",
		bypass:     annotate("autoscaling.knative.dev/activation-scale", "6", "autoscaling.knative.dev/max-scale", "5"),
		knativeSay: "max-scale=5 is less than activation-scale=6",
	}, {
		name:       "activation-scale 1",
		sets:       []string{"functions.getResult.autoscaling.activationScale=1"},
		chartSays:  "/functions/getResult/autoscaling/activationScale",
		bypass:     annotate("autoscaling.knative.dev/activation-scale", "1", "autoscaling.knative.dev/min-scale", "0"),
		knativeSay: "activation-scale=1 must be greater than 1",
	}, {
		name:       "a panic window percentage over 100",
		sets:       []string{"functions.getResult.autoscaling.panicWindowPercentage=101"},
		chartSays:  "/functions/getResult/autoscaling/panicWindowPercentage",
		bypass:     annotate("autoscaling.knative.dev/panic-window-percentage", "101"),
		knativeSay: "autoscaling.knative.dev/panic-window-percentage",
	}, {
		name:       "a panic threshold under 110%",
		sets:       []string{"functions.getResult.autoscaling.panicThresholdPercentage=100"},
		chartSays:  "/functions/getResult/autoscaling/panicThresholdPercentage",
		bypass:     annotate("autoscaling.knative.dev/panic-threshold-percentage", "100"),
		knativeSay: "autoscaling.knative.dev/panic-threshold-percentage",
	}, {
		name:       "a target burst capacity under -1",
		sets:       []string{"functions.getResult.autoscaling.targetBurstCapacity=-2"},
		chartSays:  "/functions/getResult/autoscaling/targetBurstCapacity",
		bypass:     annotate("autoscaling.knative.dev/target-burst-capacity", "-2"),
		knativeSay: "autoscaling.knative.dev/target-burst-capacity",
	}}
	defaults := services(t, render(t, release{}))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderErr(t, release{sets: tc.sets})
			if err == nil {
				t.Fatalf("the chart rendered %v", tc.sets)
			}
			if !strings.Contains(err.Error(), tc.chartSays) {
				t.Errorf("the chart's message does not say %q:\n%v", tc.chartSays, err)
			}
			name := "get-result"
			if strings.Contains(tc.sets[0], "updateResult") {
				name = "update-result"
			} else if strings.Contains(tc.sets[0], "createResult") {
				name = "create-result"
			}
			svc := defaults[name].DeepCopy()
			tc.bypass(svc)
			_, kerr := admitCreate(ctx, svc)
			if kerr == nil || !strings.Contains(kerr.Error(), tc.knativeSay) {
				t.Errorf("Knative's validation, want an error naming %q, got: %v", tc.knativeSay, kerr)
			}
		})
	}
}

// The per-revision autoscaling settings Knative has, which the chart passes
// through as the revision template's annotations.
func TestPerRevisionAutoscalingKnobsReachKnativeAndValidate(t *testing.T) {
	ctx := knativeContext(t, nil)
	cases := []struct {
		name string
		sets []string
		want map[string]string
	}{{
		name: "stable window and panic settings",
		sets: []string{"functions.getResult.autoscaling.window=90s", "functions.getResult.autoscaling.panicWindowPercentage=20",
			"functions.getResult.autoscaling.panicThresholdPercentage=250"},
		want: map[string]string{"autoscaling.knative.dev/window": "90s", "autoscaling.knative.dev/panic-window-percentage": "20",
			"autoscaling.knative.dev/panic-threshold-percentage": "250"},
	}, {
		name: "the activator always in the path, and a burst from zero",
		sets: []string{"functions.getResult.autoscaling.targetBurstCapacity=-1", "functions.getResult.autoscaling.activationScale=3"},
		want: map[string]string{"autoscaling.knative.dev/target-burst-capacity": "-1", "autoscaling.knative.dev/activation-scale": "3"},
	}, {
		name: "the activator only when scaled to zero, the longest window",
		sets: []string{"functions.getResult.autoscaling.targetBurstCapacity=0", "functions.getResult.autoscaling.window=1h"},
		want: map[string]string{"autoscaling.knative.dev/target-burst-capacity": "0", "autoscaling.knative.dev/window": "1h"},
	}, {
		name: "the narrowest panic settings, the shortest window",
		sets: []string{"functions.getResult.autoscaling.panicWindowPercentage=1", "functions.getResult.autoscaling.panicThresholdPercentage=110",
			"functions.getResult.autoscaling.window=6s"},
		want: map[string]string{"autoscaling.knative.dev/panic-window-percentage": "1",
			"autoscaling.knative.dev/panic-threshold-percentage": "110", "autoscaling.knative.dev/window": "6s"},
	}, {
		name: "the longest scale-down delay",
		sets: []string{"functions.getResult.autoscaling.scaleDownDelay=1h"},
		want: map[string]string{"autoscaling.knative.dev/scale-down-delay": "1h"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := services(t, render(t, release{sets: tc.sets}))["get-result"]
			got := map[string]string{}
			for key := range tc.want {
				got[key] = svc.Spec.Template.Annotations[key]
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if _, err := admitCreate(ctx, svc); err != nil {
				t.Errorf("Knative refuses it: %v", err)
			}
		})
	}
}

// initialScale 0 renders once knative.allowZeroInitialScale says the cluster
// allows it, and Knative with that config-autoscaler accepts it.
func TestZeroInitialScaleWhenTheClusterAllowsIt(t *testing.T) {
	sets := []string{"knative.allowZeroInitialScale=true", "functions.updateResult.autoscaling.initialScale=0"}
	svc := services(t, render(t, release{sets: sets}))["update-result"]
	if got := svc.Spec.Template.Annotations["autoscaling.knative.dev/initial-scale"]; got != "0" {
		t.Fatalf("initial-scale = %q", got)
	}
	if _, err := admitCreate(knativeContext(t, map[string]string{"allow-zero-initial-scale": "true"}), svc); err != nil {
		t.Errorf("Knative allowing zero initial scale refuses it: %v", err)
	}
	if _, err := admitCreate(knativeContext(t, nil), svc); err == nil {
		t.Error("Knative's shipped configuration accepts initial-scale 0")
	}
}

func ptr[T any](v T) *T { return &v }

// annotate sets revision template annotations, in key, value pairs.
func annotate(kv ...string) func(*v1.Service) {
	return func(s *v1.Service) {
		for i := 0; i < len(kv); i += 2 {
			s.Spec.Template.Annotations[kv[i]] = kv[i+1]
		}
	}
}
