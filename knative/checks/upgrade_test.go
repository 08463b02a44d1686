package checks

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"knative.dev/pkg/apis"
	v1 "knative.dev/serving/pkg/apis/serving/v1"
)

// cdManaged is get-result as the CD pipeline leaves it: a tuned target, the
// candidate's digest under the BYO suffix abc1234, and the given traffic.
func cdManaged(traffic ...string) release {
	return release{sets: append([]string{
		"functions.getResult.autoscaling.target=80",
		"functions.getResult.image.digest=sha256:" + hex64('2'), "functions.getResult.revision=abc1234",
	}, traffic...)}
}

// The life of a release, one `helm upgrade` per step, each validated by
// Knative as an update of the object the step before left in the cluster.
// promote (.github/promote) sets the same keys with --reset-then-reuse-values;
// get-result-00002 is the revision Knative named at the tuning step.
var upgradeSteps = []struct {
	name    string
	release release
	// revisionName is get-result's template name: "" (Knative names it) or the
	// BYO prefix before the template hash.
	revisionName string
	renamed      bool // whether get-result's template gets another name than the step before
}{{
	name:    "install",
	release: release{},
}, {
	name:    "tune a target",
	release: release{sets: []string{"functions.getResult.autoscaling.target=80"}},
}, {
	name: "CD rollout: candidate at 0% beside the stable revision",
	release: cdManaged(
		"functions.getResult.traffic[0].revisionName=get-result-00002", "functions.getResult.traffic[0].percent=100",
		"functions.getResult.traffic[1].revision=abc1234", "functions.getResult.traffic[1].percent=0",
		"functions.getResult.traffic[1].tag=candidate"),
	revisionName: "get-result-abc1234-",
	renamed:      true,
}, {
	name: "CD rollout: 50/50 (traffic only: same template, same name)",
	release: cdManaged(
		"functions.getResult.traffic[0].revisionName=get-result-00002", "functions.getResult.traffic[0].percent=50",
		"functions.getResult.traffic[0].tag=previous",
		"functions.getResult.traffic[1].revision=abc1234", "functions.getResult.traffic[1].percent=50",
		"functions.getResult.traffic[1].tag=candidate"),
	revisionName: "get-result-abc1234-",
}, {
	name:         "CD rollout: promoted",
	release:      cdManaged(promoted...),
	revisionName: "get-result-abc1234-",
}, {
	name:         "tune again on the CD-managed release",
	release:      cdManaged(append(promoted, "functions.getResult.autoscaling.target=90")...),
	revisionName: "get-result-abc1234-",
	renamed:      true,
}}

// promoted: all traffic on the revision this render creates, the previous one kept at 0%.
var promoted = []string{
	"functions.getResult.traffic[0].revision=abc1234", "functions.getResult.traffic[0].percent=100",
	"functions.getResult.traffic[1].revisionName=get-result-00002", "functions.getResult.traffic[1].percent=0",
	"functions.getResult.traffic[1].tag=previous",
}

func TestUpgradeSequenceIsAcceptedAsUpdates(t *testing.T) {
	ctx := knativeContext(t, nil)
	var stored map[string]*v1.Service // what the cluster holds after the previous step
	var storedManifests map[string][]byte
	for i, step := range upgradeSteps {
		manifests := map[string][]byte{}
		svcs := servicesWithJSON(t, render(t, step.release), manifests)
		next := map[string]*v1.Service{}
		for name, svc := range svcs {
			var admitted *v1.Service
			var err *apis.FieldError
			if stored == nil {
				admitted, err = admitCreate(ctx, svc)
			} else {
				admitted, err = admitUpdate(ctx, stored[name], helmUpgrade(t, stored[name], storedManifests[name], manifests[name]))
			}
			if err != nil {
				t.Errorf("step %d (%s): Knative refuses %s: %v", i, step.name, name, err)
			}
			next[name] = admitted
		}
		got := svcs["get-result"].Spec.Template.Name
		if (step.revisionName == "") != (got == "") || !strings.HasPrefix(got, step.revisionName) {
			t.Errorf("step %d (%s): get-result's template is named %q, want the prefix %q", i, step.name, got, step.revisionName)
		}
		if stored != nil {
			before := stored["get-result"].Spec.Template.Name
			if renamed := got != before; renamed != step.renamed {
				t.Errorf("step %d (%s): template name %q -> %q, renamed = %v, want %v", i, step.name, before, got, renamed, step.renamed)
			}
			// the other functions' templates are untouched by get-result's steps
			for name, svc := range next {
				if name == "get-result" {
					continue
				}
				if diff := cmp.Diff(stored[name].Spec.Template, svc.Spec.Template); diff != "" {
					t.Errorf("step %d (%s): %s's template changed (-before +after):\n%s", i, step.name, name, diff)
				}
			}
		}
		stored, storedManifests = next, manifests
	}
}

// Without the template hash in the name, the tuning step is what Knative
// refuses: a changed template under an unchanged BYO name. This keeps the
// test above honest (the webhook code does look at the name).
func TestKnativeRefusesAChangedTemplateUnderTheSameName(t *testing.T) {
	ctx := knativeContext(t, nil)
	last := len(upgradeSteps) - 1
	oldManifests, newManifests := map[string][]byte{}, map[string][]byte{}
	old, err := admitCreate(ctx, servicesWithJSON(t, render(t, upgradeSteps[last-1].release), oldManifests)["get-result"])
	if err != nil {
		t.Fatal(err)
	}
	servicesWithJSON(t, render(t, upgradeSteps[last].release), newManifests)
	// the tuned manifest with the name of the template before it
	tuned := helmUpgrade(t, old, oldManifests["get-result"], newManifests["get-result"])
	tuned.Spec.Template.Name = old.Spec.Template.Name
	_, err = admitUpdate(ctx, old, tuned)
	if err == nil || !strings.Contains(err.Error(), "Saw the following changes without a name change") {
		t.Fatalf("Knative accepted a changed template under the name %q: %v", old.Spec.Template.Name, err)
	}
}
