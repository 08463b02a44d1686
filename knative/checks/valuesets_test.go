package checks

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// A placeholder PEM for the RDS CA bundle (given with --set-file at install).
const caBundleSet = "database.tls.caBundle=-----BEGIN CERTIFICATE-----"

// cdRelease is a release the CD pipeline manages, every function of
// functions.yaml as the promotion program leaves it: knative/cd_values.py
// builds the --set expressions with .github/promote's own override, so these
// checks render exactly the keys CD writes (image digest, BYO revision
// suffix, tagged traffic split; get-result mid-canary).
func cdRelease(t testing.TB) release {
	t.Helper()
	cmd := exec.Command(python(t), filepath.Join(knativeDir(t), "cd_values.py"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("knative/cd_values.py: %v\n%s", err, stderr.String())
	}
	return release{sets: strings.Fields(string(out))}
}

func hex64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

var valueSets = []struct {
	name    string
	release func(testing.TB) release
	without []string // functions of functions.yaml the value set disables
}{{
	name:    "defaults",
	release: fixed(release{}),
}, {
	name:    "prod",
	release: fixed(release{files: []string{"ci/prod-values.yaml"}}),
}, {
	name:    "minimal",
	release: fixed(release{files: []string{"ci/minimal-values.yaml"}}),
	without: []string{"delete-result"},
}, {
	name:    "rds",
	release: fixed(release{files: []string{"ci/rds-values.yaml"}, sets: []string{caBundleSet}}),
}, {
	name:    "cd-managed",
	release: cdRelease,
}}

func fixed(r release) func(testing.TB) release { return func(testing.TB) release { return r } }

func TestValueSetsPassKnativeDefaultingAndValidation(t *testing.T) {
	ctx := knativeContext(t, nil)
	for _, tc := range valueSets {
		t.Run(tc.name, func(t *testing.T) {
			svcs := services(t, render(t, tc.release(t)))
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

// Every function of a CD-managed release runs the image digest CD set, in a
// revision named after the commit CD set.
func TestACDManagedReleaseRunsEachFunctionsDigestUnderItsCommit(t *testing.T) {
	r := cdRelease(t)
	set := map[string]string{}
	for _, s := range r.sets {
		k, v, _ := strings.Cut(s, "=")
		set[k] = v
	}
	svcs := services(t, render(t, r))
	for _, fn := range functions(t) {
		digest, commit := set["functions."+fn.Key+".image.digest"], set["functions."+fn.Key+".revision"]
		if digest == "" || commit == "" {
			t.Errorf("%s: knative/cd_values.py sets no digest or revision for functions.%s", fn.Name, fn.Key)
			continue
		}
		svc, ok := svcs[fn.Name]
		if !ok {
			t.Errorf("%s is not rendered", fn.Name)
			continue
		}
		if image := svc.Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(image, "@"+digest) {
			t.Errorf("%s: image %q, CD set digest %s", fn.Name, image, digest)
		}
		if name := svc.Spec.Template.Name; !strings.HasPrefix(name, fn.Name+"-"+commit+"-") {
			t.Errorf("%s: revision %q is not named after commit %s", fn.Name, name, commit)
		}
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
