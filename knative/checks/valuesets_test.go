package checks

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// A placeholder PEM for the RDS CA bundle (given with --set-file at install).
const caBundleSet = "database.tls.caBundle=-----BEGIN CERTIFICATE-----"

// cdRelease is a release the CD pipeline manages: every function pinned by
// digest under a BYO revision suffix, get-result's traffic split across the
// stable revision (named as the Service's status shows it) and the candidate
// this render creates, both tagged.
var cdRelease = release{sets: []string{
	"functions.createResult.image.digest=sha256:" + hex64('1'), "functions.createResult.revision=abc1234",
	"functions.getResult.image.digest=sha256:" + hex64('2'), "functions.getResult.revision=abc1234",
	"functions.listResults.image.digest=sha256:" + hex64('3'), "functions.listResults.revision=abc1234",
	"functions.updateResult.image.digest=sha256:" + hex64('4'), "functions.updateResult.revision=abc1234",
	"functions.deleteResult.image.digest=sha256:" + hex64('5'), "functions.deleteResult.revision=abc1234",
	"functions.getResult.traffic[0].revisionName=get-result-00002", "functions.getResult.traffic[0].percent=90",
	"functions.getResult.traffic[0].tag=stable",
	"functions.getResult.traffic[1].revision=abc1234", "functions.getResult.traffic[1].percent=10",
	"functions.getResult.traffic[1].tag=candidate",
}}

func hex64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

var valueSets = []struct {
	name    string
	release release
	without []string // functions of functions.yaml the value set disables
}{{
	name:    "defaults",
	release: release{},
}, {
	name:    "prod",
	release: release{files: []string{"ci/prod-values.yaml"}},
}, {
	name:    "minimal",
	release: release{files: []string{"ci/minimal-values.yaml"}},
	without: []string{"delete-result"},
}, {
	name:    "rds",
	release: release{files: []string{"ci/rds-values.yaml"}, sets: []string{caBundleSet}},
}, {
	name:    "cd-managed",
	release: cdRelease,
}}

func TestValueSetsPassKnativeDefaultingAndValidation(t *testing.T) {
	ctx := knativeContext(t, nil)
	for _, tc := range valueSets {
		t.Run(tc.name, func(t *testing.T) {
			svcs := services(t, render(t, tc.release))
			var got []string
			for name, svc := range svcs {
				got = append(got, name)
				if _, err := admitCreate(ctx, svc); err != nil {
					t.Errorf("%s: Knative refuses it: %v", name, err)
				}
			}
			sort.Strings(got)
			if diff := cmp.Diff(manifestFunctions(t, tc.without...), got); diff != "" {
				t.Errorf("Knative Services (-want +got):\n%s", diff)
			}
		})
	}
}

// Every function of functions.yaml is a Knative Service of the default render.
func TestEveryFunctionOfTheManifestIsAKnativeService(t *testing.T) {
	svcs := services(t, render(t, release{}))
	for _, fn := range functions(t) {
		svc, ok := svcs[fn.Name]
		if !ok {
			t.Errorf("%s (functions.%s) is not rendered", fn.Name, fn.Key)
			continue
		}
		if got := svc.Spec.Template.Labels["exam-results/access"]; got != fn.Access {
			t.Errorf("%s: access label %q, functions.yaml says %q", fn.Name, got, fn.Access)
		}
	}
	if len(svcs) != len(functions(t)) {
		t.Errorf("%d Knative Services for %d functions", len(svcs), len(functions(t)))
	}
}

// manifestFunctions lists the functions of functions.yaml, sorted, less the named ones:
// the Knative Services a value set renders.
func manifestFunctions(t *testing.T, without ...string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(knativeDir(t), "exam-results", "functions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		Functions []struct {
			Name string `json:"name"`
		} `json:"functions"`
	}
	if err := yaml.Unmarshal(data, &manifest); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range manifest.Functions {
		if !slices.Contains(without, f.Name) {
			names = append(names, f.Name)
		}
	}
	sort.Strings(names)
	return names
}
